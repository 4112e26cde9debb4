"""``--start``, ``--duration`` and ``--frames``: part of a video, on files, stdin, image folders and
batches, with the source's frame numbers, rebased timestamps and the sound cut to the same span."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from test_segment import DAVIS, clip, make_clip, one_line_error, run, tiny_weights, video_timestamps  # noqa: F401

pytestmark = pytest.mark.skipif(not DAVIS.exists(), reason="../shared/davis16-dev absent")


def segment(source: str, out: Path, weights: Path, *more: str, stdin: bytes | None = None) -> dict:
    result = run("segment", source, "-o", str(out), "--weights", str(weights), "--flow", "dis", "--json", *more,
                 stdin=stdin)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def png_names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob("*.png"))


def test_a_trim_of_a_variable_rate_file_keeps_its_frame_numbers_and_durations(clip, tiny_weights, tmp_path):
    # the clip's frames are at 0, 1, 3, 4, 6, 7, 9, 10 / 30 s: [0.1, 0.25) holds 3, 4, 6 and 7 / 30
    summary = segment(str(clip), tmp_path / "out", tiny_weights, "--start", "0.1", "--duration", "0.15",
                      "--save", "masks,mask-video")
    assert summary["frames"] == 4
    assert png_names(tmp_path / "out" / "masks") == ["00002.png", "00003.png", "00004.png", "00005.png"]
    assert video_timestamps(tmp_path / "out" / "mask.mp4") == pytest.approx([0, 1 / 30, 3 / 30, 4 / 30], abs=1e-3)
    summary = segment(str(clip), tmp_path / "count", tiny_weights, "--start", "0.1", "--frames", "2", "--save", "masks")
    assert summary["frames"] == 2 and png_names(tmp_path / "count" / "masks") == ["00002.png", "00003.png"]


def test_the_sound_of_a_trim_is_cut_to_the_same_span(tiny_weights, tmp_path):
    source = make_clip(tmp_path / "talk.mp4", frames=10, audio="aac")
    out = tmp_path / "out"
    summary = segment(str(source), out, tiny_weights, "--start", "0.12", "--frames", "3", "--save", "overlay")
    assert summary["frames"] == 3 and summary["audio"] == "aac copied"
    assert video_timestamps(out / "overlay.mp4") == pytest.approx([0, 0.04, 0.08], abs=1e-3)
    with av.open(str(out / "overlay.mp4")) as container:
        packets = [packet for packet in container.demux(audio=0) if packet.pts is not None]
    start = float(packets[0].pts * packets[0].time_base)
    end = float((packets[-1].pts + packets[-1].duration) * packets[-1].time_base)
    assert start == pytest.approx(0, abs=0.025) and end == pytest.approx(0.12, abs=0.025)


def test_the_last_frame_kept_takes_its_flow_from_the_next_frame_as_untrimmed(clip, tiny_weights, tmp_path):
    two = tmp_path / "two"
    three = tmp_path / "three"
    segment(str(clip), two, tiny_weights, "--start", "0.03", "--frames", "2", "--save", "probs")
    segment(str(clip), three, tiny_weights, "--start", "0.03", "--frames", "3", "--save", "probs")
    assert png_names(two / "probs") == ["00001.png", "00002.png"]
    for name in png_names(two / "probs"):
        np.testing.assert_array_equal(cv2.imread(str(two / "probs" / name), cv2.IMREAD_UNCHANGED),
                                      cv2.imread(str(three / "probs" / name), cv2.IMREAD_UNCHANGED), err_msg=name)


def test_stdin_image_folders_and_batches_are_trimmed_too(clip, tiny_weights, tmp_path):
    summary = segment("-", tmp_path / "stdin", tiny_weights, "--start", "0.1", "--frames", "2", "--save", "masks",
                      stdin=clip.read_bytes())
    assert summary["frames"] == 2 and png_names(tmp_path / "stdin" / "masks") == ["00002.png", "00003.png"]
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, image in enumerate(sorted((DAVIS / "JPEGImages" / "480p" / "dog").glob("*.jpg"))[:6]):
        cv2.imwrite(str(folder / f"{index}.jpg"), cv2.resize(cv2.imread(str(image)), (64, 48)))
    summary = segment(str(folder), tmp_path / "folder", tiny_weights, "--fps", "10", "--start", "0.2",
                      "--duration", "0.2", "--save", "masks,mask-video")
    assert png_names(tmp_path / "folder" / "masks") == ["00002.png", "00003.png"]
    assert video_timestamps(tmp_path / "folder" / "mask.mp4") == pytest.approx([0, 0.1])
    result = run("segment", str(clip), str(folder), "-o", str(tmp_path / "batch"), "--weights", str(tiny_weights),
                 "--flow", "dis", "--save", "masks", "--frames", "2", "--json")
    assert result.returncode == 0, result.stderr.decode()
    assert [line["frames"] for line in map(json.loads, result.stdout.decode().splitlines())] == [2, 2]
    for name in ("blackswan", "frames"):
        assert png_names(tmp_path / "batch" / name / "masks") == ["00000.png", "00001.png"], name


def test_bad_trims_give_one_line_and_exit_2(clip, tiny_weights, tmp_path):
    common = ("--weights", str(tiny_weights), "--flow", "dis", "--save", "masks")
    cases = {
        ("--start", "-1"): "--start must be a time of 0 seconds or more",
        ("--start", "nan"): "--start must be a time of 0 seconds or more",
        ("--duration", "0"): "--duration must be a time of more than 0 seconds",
        ("--duration", "inf"): "--duration must be a time of more than 0 seconds",
        ("--frames", "0"): "--frames must be at least 1",
        ("--start", "9"): f"--start 9 is past the end of {clip}: the video is 0.37 s long",
        ("--start", "0.3", "--flow-dir", str(tmp_path)): "--flow-dir holds the flow of a whole video",
    }
    for args, expected in cases.items():
        out = tmp_path / "out"
        result = run("segment", str(clip), "-o", str(out), *common, *args)
        assert result.returncode == 2 and expected in one_line_error(result), (args, result.stderr)
        assert not (out / "masks").exists(), args
    result = run("segment", "-", "-o", str(tmp_path / "piped"), *common, "--start", "9", stdin=clip.read_bytes())
    assert result.returncode == 2 and "past the end of stdin: the video is 0.37 s long" in one_line_error(result)
