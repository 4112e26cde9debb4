"""``hmhi segment a.mp4 b.mov clips/ -o out/``: several videos, one loading of the weights, resumable, shardable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest

from hmhi_cli.batch import collect_videos, is_batch, shard_videos
from hmhi_cli.errors import InputError
from test_segment import DAVIS, make_clip, one_line_error, run, tiny_weights  # noqa: F401

pytestmark = pytest.mark.skipif(not DAVIS.exists(), reason="../shared/davis16-dev absent")
FRAMES = 4
EXPECTED = [("clips-a.mp4", "done"), ("b2", "done"), ("b10", "done"), ("broken", "failed"), ("frames", "done"),
            ("other-a.mp4", "done")]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """clips/ (a.mp4, b2.mov, b10.mkv, a corrupt broken.mp4, notes.txt), frames/ (4 JPEGs) and other/a.mp4."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "clips").mkdir()
    make_clip(root / "clips" / "a.mp4", "blackswan", FRAMES)
    make_clip(root / "clips" / "b2.mov", "dog", FRAMES)
    make_clip(root / "clips" / "b10.mkv", "cows", FRAMES)
    (root / "clips" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"not really a video" * 50)
    (root / "clips" / "notes.txt").write_text("not a video")
    (root / "frames").mkdir()
    for index, path in enumerate(sorted((DAVIS / "JPEGImages" / "480p" / "kite-surf").glob("*.jpg"))[:FRAMES]):
        cv2.imwrite(str(root / "frames" / f"{index}.jpg"), cv2.resize(cv2.imread(str(path)), (64, 48)))
    (root / "other").mkdir()
    make_clip(root / "other" / "a.mp4", "dog", FRAMES)
    return root


def sources(inputs: Path) -> list[str]:
    return [str(inputs / "other" / "a.mp4"), str(inputs / "frames"), str(inputs / "clips")]


def segment(inputs: Path, out: Path, weights: Path, *more: str):
    return run("segment", *sources(inputs), "-o", str(out), "--weights", str(weights), "--flow", "dis",
               "--save", "masks,mask-video", *more)


def json_lines(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.decode().splitlines()]


@pytest.fixture(scope="module")
def first_run(inputs, tiny_weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("batch") / "out"
    return out, segment(inputs, out, tiny_weights, "--json")


def test_the_list_is_sorted_named_uniquely_and_sharded_into_a_partition(inputs):
    videos = collect_videos(sources(inputs))
    assert [(video.name, video.source) for video in videos] == [
        ("clips-a.mp4", inputs / "clips" / "a.mp4"), ("b2", inputs / "clips" / "b2.mov"),
        ("b10", inputs / "clips" / "b10.mkv"), ("broken", inputs / "clips" / "broken.mp4"), ("frames", inputs / "frames"),
        ("other-a.mp4", inputs / "other" / "a.mp4")]
    assert collect_videos([*sources(inputs), str(inputs / "clips" / "a.mp4")]) == videos, "each video once"
    shards = [shard_videos(videos, f"{index}/4") for index in range(4)]
    assert sorted(video.name for shard in shards for video in shard) == sorted(video.name for video in videos)
    assert [len(shard) for shard in shards] == [2, 2, 1, 1]
    assert not is_batch([str(inputs / "frames")]) and not is_batch([str(inputs / "clips" / "a.mp4")])
    assert is_batch([str(inputs / "clips")]) and is_batch([str(inputs / "frames"), str(inputs / "frames")])
    with pytest.raises(InputError, match="no images .* or videos in folder"):
        collect_videos([str(inputs / "frames"), str(inputs / "other" / "a.mp4"), str(DAVIS)])
    with pytest.raises(InputError, match="'-'"):
        collect_videos(["-", str(inputs / "frames")])


def test_a_batch_goes_on_past_a_broken_video_and_loads_the_weights_once(first_run):
    out, result = first_run
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    outcomes = json_lines(result.stdout)
    assert [(outcome["name"], outcome["status"]) for outcome in outcomes] == EXPECTED
    for outcome in outcomes:
        if outcome["status"] == "done":
            folder = out / outcome["name"]
            assert outcome["output"] == str(folder) and outcome["frames"] == FRAMES
            assert sorted(p.name for p in folder.iterdir()) == [".hmhi-input.json", ".hmhi-settings.json", "mask.mp4", "masks"]
            assert len(list((folder / "masks").glob("*.png"))) == FRAMES
    broken = outcomes[3]
    assert "broken.mp4" in broken["error"] and not (out / "broken").exists()
    assert stderr.count("weights tiny.safetensors") == 1, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == "6 videos (shard 0/1): 5 done, 0 skipped, 1 failed: broken"


def test_a_rerun_skips_finished_videos_and_shards_split_the_list(first_run, inputs, tiny_weights):
    out, _ = first_run
    masks = sorted(out.glob("*/masks/00000.png"))
    before = {path: path.stat().st_mtime_ns for path in masks}
    assert len(before) == 5
    names = []
    for index, expected_code in ((0, 0), (1, 1)):  # broken.mp4 is in shard 1/2 and fails again
        result = segment(inputs, out, tiny_weights, "--json", "--shard", f"{index}/2", "-q")
        assert result.returncode == expected_code, result.stderr.decode()
        outcomes = json_lines(result.stdout)
        assert [(o["name"], o["status"]) for o in outcomes] == [
            (name, "failed" if name == "broken" else "skipped") for name, _ in EXPECTED[index::2]]
        names += [outcome["name"] for outcome in outcomes]
    assert sorted(names) == sorted(name for name, _ in EXPECTED)
    assert {path: path.stat().st_mtime_ns for path in masks} == before
    redo = run("segment", str(inputs / "clips" / "a.mp4"), str(inputs / "frames"), "-o", str(out), "--weights",
               str(tiny_weights), "--flow", "dis", "--save", "masks,mask-video", "--json", "--overwrite", "-q")
    assert redo.returncode == 0, redo.stderr.decode()
    assert [(o["name"], o["status"]) for o in json_lines(redo.stdout)] == [("a", "done"), ("frames", "done")]
    assert (out / "a" / "masks" / "00000.png").is_file(), "alone, a.mp4 is named after its stem"
    redone = out / "frames" / "masks" / "00000.png"
    assert redone.stat().st_mtime_ns > before[redone]
    assert (out / "b2" / "masks" / "00000.png").stat().st_mtime_ns == before[out / "b2" / "masks" / "00000.png"]


def test_bad_shards_and_mixing_stdin_give_one_line_and_exit_2(inputs, tiny_weights, tmp_path):
    for shard, expected in (("2/2", "bad shard 2/2"), ("1of2", "bad shard '1of2'")):
        result = segment(inputs, tmp_path / "out", tiny_weights, "--shard", shard)
        message = one_line_error(result)
        assert result.returncode == 2 and expected in message, message
    result = run("segment", "-", str(inputs / "frames"), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights))
    message = one_line_error(result)
    assert result.returncode == 2 and "cannot be combined" in message, message
    single = run("segment", str(inputs / "frames"), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights),
                 "--shard", "1/2")
    assert single.returncode == 0 and "nothing to do" in single.stderr.decode(), "one video is video 0 of the list"
    assert not (tmp_path / "out").exists()


def test_a_folder_of_videos_alone_is_a_batch_too(inputs, tiny_weights, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(inputs / "clips" / "b2.mov", clips / "only.mov")
    result = run("segment", str(clips), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights), "--flow", "dis",
                 "--save", "masks", "-q")
    assert result.returncode == 0 and result.stderr == b"", result.stderr.decode()
    assert len(list((tmp_path / "out" / "only" / "masks").glob("*.png"))) == FRAMES


def test_a_rerun_deletes_what_a_killed_run_left_in_the_folders_it_skips(first_run, inputs, tiny_weights):
    out, _ = first_run
    folder = out / "b10"
    (folder / ".hmhi-segment-k2j4x9.partial" / "masks").mkdir(parents=True)  # a killed run's staging
    (folder / ".hmhi-segment-k2j4x9.partial" / "masks" / "00000.png").write_bytes(b"half")
    (folder / ".hmhi-segment.lock").write_bytes(b"")  # its lock file, which no process holds any more
    (folder / ".mask.mp4.x1y2z3.part.mp4").write_bytes(b"what older versions left")
    result = segment(inputs, out, tiny_weights, "--json", "-q", "--shard", "0/2")
    assert result.returncode == 0, result.stderr.decode()
    assert ("b10", "skipped") in [(o["name"], o["status"]) for o in json_lines(result.stdout)]
    assert sorted(p.name for p in folder.iterdir()) == [".hmhi-input.json", ".hmhi-settings.json", "mask.mp4", "masks"]


def test_names_that_would_leave_the_output_folder_or_break_lines_are_made_safe(tiny_weights, tmp_path):
    """``...mp4`` has the stem ``..``: its outputs once replaced OUT's parent's masks/ and mask.mp4."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, sequence in (("...mp4", "blackswan"), ("..mp4", "dog"), ("ok.mp4", "cows"), ("ok2.mp4", "dog"),
                           ("new\nline.mp4", "blackswan")):
        make_clip(inputs / name, sequence, frames=1)
    (inputs / "bro\nken.mp4").write_bytes(b"not a video")
    parent = tmp_path / "p"
    (parent / "masks").mkdir(parents=True)
    (parent / "masks" / "IMPORTANT.txt").write_text("keep me")
    (parent / "results").mkdir()
    (parent / "results" / "ok2").symlink_to(parent / "masks", target_is_directory=True)
    named = [str(inputs / name) for name in ("...mp4", "..mp4")]  # hidden files, so named: a folder leaves them out
    result = run("segment", *named, str(inputs), "-o", str(parent / "results"), "--weights", str(tiny_weights),
                 "--flow", "dis", "--overwrite", "--json")
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert [(o["name"], o["status"]) for o in json_lines(result.stdout)] == [
        ("_..", "done"), ("_.", "done"), ("bro_ken", "failed"), ("new_line", "done"), ("ok", "done"),
        ("ok2", "failed")], "natural order: ok before ok2"
    assert sorted(p.name for p in parent.iterdir()) == ["masks", "results"]
    assert [p.name for p in (parent / "masks").iterdir()] == ["IMPORTANT.txt"]
    assert (parent / "masks" / "IMPORTANT.txt").read_text() == "keep me"
    assert sorted(p.name for p in (parent / "results").iterdir()) == ["_.", "_..", "new_line", "ok", "ok2"]
    lines = stderr.splitlines()
    assert f"failed ok2: {parent / 'results' / 'ok2'} is a link: each video's outputs go into a folder of its own " \
           f"inside {parent / 'results'}" in lines, stderr
    broken = [line for line in lines if line.startswith("failed bro_ken: ")]
    assert len(broken) == 1 and "bro\\nken.mp4" in broken[0], stderr
    assert any(line.startswith("done new_line: 1 frames") for line in lines), stderr
    assert not any(line.startswith(("line", "ken")) for line in lines), stderr


def test_a_name_stays_with_its_video_and_outputs_of_another_input_are_not_skipped(tiny_weights, tmp_path):
    clips, out = tmp_path / "clips", tmp_path / "out"
    clips.mkdir()
    make_clip(clips / "a.mp4", "blackswan", frames=1)
    make_clip(clips / "a.mov", "dog", frames=1)
    first = run("segment", str(clips), "-o", str(out), "--weights", str(tiny_weights), "--flow", "dis", "--json", "-q")
    assert first.returncode == 0, first.stderr.decode()
    assert [(o["name"], o["status"]) for o in json_lines(first.stdout)] == [("a.mov", "done"), ("a.mp4", "done")]
    make_clip(clips / "a.avi", "cows", frames=1)
    second = run("segment", str(clips), "-o", str(out), "--weights", str(tiny_weights), "--flow", "dis", "--json", "-q")
    assert second.returncode == 0, second.stderr.decode()
    assert [(o["name"], o["status"]) for o in json_lines(second.stdout)] == [
        ("a.avi", "done"), ("a.mov", "skipped"), ("a.mp4", "skipped")]
    for name in ("a.avi", "a.mov", "a.mp4"):
        assert json.loads((out / name / ".hmhi-input.json").read_text())["input"] == str((clips / name).resolve())
    make_clip(clips / "a.avi", "dog", frames=2)  # changed since its outputs were made
    other = tmp_path / "other"
    other.mkdir()
    make_clip(other / "a.mov", "cows", frames=1)  # named a.mov beside a.avi: out/a.mov holds clips/a.mov's outputs
    third = run("segment", str(clips / "a.avi"), str(other), "-o", str(out), "--weights", str(tiny_weights), "--flow",
                "dis", "--json", "-q")
    assert third.returncode == 1, third.stderr.decode()
    outcomes = json_lines(third.stdout)
    assert [(o["name"], o["status"]) for o in outcomes] == [("a.avi", "failed"), ("a.mov", "failed")]
    assert outcomes[0]["error"] == (f"{out / 'a.avi'} holds the outputs of {clips / 'a.avi'} as it was before it "
                                    "changed; pass --overwrite to redo it")
    assert outcomes[1]["error"] == (f"{out / 'a.mov'} holds the outputs of another input, {(clips / 'a.mov').resolve()}; "
                                    "pass --overwrite to replace them")
    assert third.stderr.decode().count("\n") == 3, "a line per failed video, and the summary"
