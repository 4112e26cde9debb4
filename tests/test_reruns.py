"""Reruns know their settings: each output folder records the settings that made it; the same
settings have nothing to do, other settings are refused in one line naming the difference."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from hmhi_cli.errors import OutputError
from hmhi_cli.model import build_model
from hmhi_cli.reruns import SETTINGS_NOTE, UNRECORDED_OPTIONS, examine, settings_record
from hmhi_cli.segment import SegmentOptions, planned_outputs
from hmhi_cli.weights import file_sha256, save_weights
from test_segment import DAVIS, make_clip, one_line_error, run, tiny_weights  # noqa: F401

pytestmark = pytest.mark.skipif(not DAVIS.exists(), reason="../shared/davis16-dev absent")
FRAMES = 3


def segment(source: Path, out: Path, weights: Path, *more: str):
    return run("segment", str(source), "-o", str(out), "--weights", str(weights), "--flow", "dis", *more)


def recorded_settings(folder: Path) -> dict:
    return json.loads((folder / SETTINGS_NOTE).read_text())["settings"]


def test_a_single_video_rerun_with_the_same_settings_has_nothing_to_do_and_other_settings_are_refused(
        tiny_weights, tmp_path):
    clip, out = make_clip(tmp_path / "clip.mp4", "dog", FRAMES), tmp_path / "out"
    first = segment(clip, out, tiny_weights, "--save", "masks,alpha", "-q")
    assert first.returncode == 0, first.stderr.decode()
    settings = recorded_settings(out)
    assert settings["threshold"] == 0.5 and settings["background"] is None and settings["outputs"] == ["masks", "alpha"]
    assert settings["weights"]["file"] == "tiny.safetensors"
    assert settings["weights"]["sha256"] == file_sha256(tiny_weights)
    assert settings["weights"]["metadata"]["provenance"] == {"purpose": "tests"}
    assert "overwrite" not in settings and "device" not in settings
    mask = out / "masks" / "00000.png"
    made = mask.stat().st_mtime_ns

    same = segment(clip, out, tiny_weights, "--save", "masks,alpha")
    assert same.returncode == 0, same.stderr.decode()
    assert same.stderr.decode().strip() == (f"nothing to do: {out} holds the outputs of {clip} made with these settings "
                                            "(pass --overwrite to redo them)")
    fewer = segment(clip, out, tiny_weights, "--save", "masks", "--json")
    assert fewer.returncode == 0, fewer.stderr.decode()
    assert json.loads(fewer.stdout) == {"input": str(clip), "output": str(out), "status": "skipped"}
    assert mask.stat().st_mtime_ns == made

    changed = segment(clip, out, tiny_weights, "--save", "masks,alpha", "--threshold", "0.4", "--background", "#00ff00")
    assert changed.returncode == 2
    assert one_line_error(changed) == (f"error: {out} was made with --threshold 0.5, --background none; "
                                       "now --threshold 0.4, --background #00ff00: pass --overwrite to redo it")
    torch.manual_seed(1)
    other = tmp_path / "other" / "tiny.safetensors"
    other.parent.mkdir()
    save_weights(build_model("mit_b0"), other, input_size=64)
    reweighted = segment(clip, out, other, "--save", "masks,alpha,overlay", "--invert")
    assert one_line_error(reweighted) == (
        f"error: {out} was made with --save masks,alpha, --weights tiny.safetensors (sha256 "
        f"{file_sha256(tiny_weights)[:12]}), no --invert; now --save masks,alpha,overlay, --weights tiny.safetensors "
        f"(sha256 {file_sha256(other)[:12]}), --invert: pass --overwrite to redo it")
    assert mask.stat().st_mtime_ns == made and not (out / "composite.mp4").exists()

    redo = segment(clip, out, tiny_weights, "--save", "masks,alpha", "--threshold", "0.4", "--background", "#00ff00",
                   "--overwrite", "-q")
    assert redo.returncode == 0, redo.stderr.decode()
    assert recorded_settings(out)["threshold"] == 0.4 and recorded_settings(out)["background"] == "#00ff00"
    assert (out / "composite.mp4").is_file()


def test_a_batch_rerun_with_other_settings_fails_those_videos_and_earlier_folders_are_skipped_once_noted(
        tiny_weights, tmp_path):
    clips, out = tmp_path / "clips", tmp_path / "out"
    clips.mkdir()
    make_clip(clips / "breakdance.mp4", "blackswan", FRAMES)
    make_clip(clips / "dog.mp4", "dog", FRAMES)
    first = segment(clips, out, tiny_weights, "--save", "masks", "-q")
    assert first.returncode == 0, first.stderr.decode()
    for name in ("breakdance", "dog"):
        assert sorted(p.name for p in (out / name).iterdir()) == [".hmhi-input.json", SETTINGS_NOTE, "masks"]
    made = (out / "dog" / "masks" / "00000.png").stat().st_mtime_ns

    changed = segment(clips, out, tiny_weights, "--save", "masks", "--threshold", "0.4", "--json")
    assert changed.returncode == 1
    errors = [(line["name"], line["status"], line["error"]) for line in map(json.loads, changed.stdout.splitlines())]
    assert errors == [(name, "failed", f"{out / name} was made with --threshold 0.5; now --threshold 0.4: "
                                       "pass --overwrite to redo it") for name in ("breakdance", "dog")]
    assert f"failed breakdance: {out / 'breakdance'} was made with --threshold 0.5; now --threshold 0.4: pass " \
           "--overwrite to redo it" in changed.stderr.decode().splitlines()

    (out / "breakdance" / SETTINGS_NOTE).unlink()  # as an earlier version left it
    again = segment(clips, out, tiny_weights, "--save", "masks")
    assert again.returncode == 0, again.stderr.decode()
    lines = again.stderr.decode().splitlines()
    assert f"skipped breakdance: its outputs are all in {out / 'breakdance'} (made by an earlier version; " \
           "settings unknown)" in lines
    assert f"skipped dog: its outputs are all in {out / 'dog'}" in lines
    assert again.stderr.decode().count("settings unknown") == 1
    assert (out / "dog" / "masks" / "00000.png").stat().st_mtime_ns == made


def test_a_video_read_from_stdin_is_not_taken_for_a_file(tiny_weights, tmp_path):
    clip, out = make_clip(tmp_path / "clip.mp4", "dog", FRAMES), tmp_path / "out"
    piped = run("segment", "-", "-o", str(out), "--weights", str(tiny_weights), "--flow", "dis", "--save", "masks",
                "-q", stdin=clip.read_bytes())
    assert piped.returncode == 0, piped.stderr.decode()
    again = segment(clip, out, tiny_weights, "--save", "masks")
    assert one_line_error(again) == f"error: {out} holds the outputs of a video read from stdin; " \
                                    "pass --overwrite to replace them"


def test_every_option_is_recorded_or_left_out_for_a_reason(tiny_weights):
    """A field added to SegmentOptions is recorded with no change to hmhi_cli.reruns, unless listed as left out."""
    record = settings_record(SegmentOptions(weights=tiny_weights))
    names = [item.name for item in dataclasses.fields(SegmentOptions)]
    assert all((name in record) != (name in UNRECORDED_OPTIONS) for name in names), (sorted(record), UNRECORDED_OPTIONS)
    assert set(record) | set(UNRECORDED_OPTIONS) == set(names)


def test_an_option_added_later_is_recorded_and_compared_with_its_default(tiny_weights, tmp_path):
    @dataclasses.dataclass
    class WithTrim(SegmentOptions):
        start: float | None = None

    clip, out = make_clip(tmp_path / "clip.mp4", "dog", 1), tmp_path / "out"
    assert segment(clip, out, tiny_weights, "--save", "masks", "-q").returncode == 0
    trimmed = WithTrim(outputs=("masks",), weights=tiny_weights, flow="dis", start=2.0)
    record = settings_record(trimmed)
    assert record["start"] == 2.0 and "start" not in recorded_settings(out)
    planned = planned_outputs(out, trimmed.outputs, trimmed.lossless, trimmed.background).values()
    with pytest.raises(OutputError) as refused:
        examine(out, planned, clip, record, lambda: settings_record(WithTrim()))
    assert str(refused.value) == f"{out} was made with --start default; now --start 2.0: pass --overwrite to redo it"
    untrimmed = settings_record(WithTrim(outputs=("masks",), weights=tiny_weights, flow="dis"))
    assert examine(out, planned, clip, untrimmed, lambda: settings_record(WithTrim())).value == "done"
