"""What ``hmhi segment`` shows while it runs: labelled elapsed and remaining time with fps, a batch's
time left from the frames of all its videos, the encoders' finishing step, and a warning for
bf16 on a CPU that emulates it."""

from __future__ import annotations

import re

import cv2
import pytest
from typer.testing import CliRunner

from hmhi_cli import runtime
from hmhi_cli.batch import BatchFrames, BatchVideo, stated_frames
from hmhi_cli.cli import app
from hmhi_cli.video.trim import Trim
from test_segment import DAVIS, make_clip, run, tiny_weights  # noqa: F401

pytestmark = pytest.mark.skipif(not DAVIS.exists(), reason="../shared/davis16-dev absent")
TERMINAL = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "200"}
BF16_WARNING = "warning: --precision bf16 will be slow: this CPU has no native bf16 (AVX-512 BF16 or AMX)"


def screen(stderr: bytes) -> str:
    """What a terminal shows of ``stderr``: control sequences dropped, redraws as lines of their own."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stderr.decode()).replace("\r", "\n")


def test_the_bar_labels_elapsed_and_remaining_time_and_shows_fps(tiny_weights, tmp_path):
    clip = make_clip(tmp_path / "dog.mp4", "dog", frames=6)
    result = run("segment", str(clip), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights), "--flow", "dis",
                 env=TERMINAL)
    assert result.returncode == 0, result.stderr.decode()
    final = [line for line in screen(result.stderr).splitlines() if "6/6" in line][-1]
    assert re.search(r"segmented .* 6/6 elapsed \d+:\d\d left 0:00 \d+\.\d fps", final), final


def test_the_finishing_step_is_shown_while_the_encoders_drain(tiny_weights, tmp_path):
    clip = make_clip(tmp_path / "dog.mp4", "dog", frames=3)
    (tmp_path / "frames").mkdir()
    for index, image in enumerate(sorted((DAVIS / "JPEGImages" / "480p" / "cows").glob("*.jpg"))[:3]):
        cv2.imwrite(str(tmp_path / "frames" / f"{index}.jpg"), cv2.resize(cv2.imread(str(image)), (64, 48)))
    result = run("segment", str(clip), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights), "--flow", "dis",
                 "--save", "masks,mask-video,overlay")
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stderr.decode().splitlines()
    assert "finishing mask.mp4, overlay.mp4…" in lines, lines
    assert lines.index("finishing mask.mp4, overlay.mp4…") < len(lines) - 1, "the summary comes after it"
    result = run("segment", str(clip), str(tmp_path / "frames"), "-o", str(tmp_path / "batch"),
                 "--weights", str(tiny_weights), "--flow", "dis", "--save", "masks")
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stderr.decode().splitlines()
    assert "finishing dog: masks…" in lines and "finishing frames: masks…" in lines, lines


def test_a_batch_counts_the_frames_of_all_its_videos(tiny_weights, tmp_path):
    (tmp_path / "clips").mkdir()
    make_clip(tmp_path / "clips" / "a.mp4", "dog", frames=4)
    make_clip(tmp_path / "clips" / "b.mkv", "cows", frames=5)
    result = run("segment", str(tmp_path / "clips"), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights),
                 "--flow", "dis", "--save", "masks", "--frames", "3", env=TERMINAL)
    assert result.returncode == 0, result.stderr.decode()
    shown = screen(result.stderr)
    assert re.search(r"videos 2/2 .* 6/6 elapsed \d+:\d\d left 0:00 \d+\.\d fps", shown), shown[-2000:]


def test_a_batch_expects_the_frames_its_videos_state_and_guesses_the_others(tmp_path):
    mp4 = make_clip(tmp_path / "a.mp4", frames=6)
    mkv = make_clip(tmp_path / "b.mkv", frames=6)
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(5):
        cv2.imwrite(str(folder / f"{index}.png"), cv2.imread(str(sorted((DAVIS / "JPEGImages" / "480p" / "dog").glob("*.jpg"))[0])))
    assert stated_frames(BatchVideo(mp4, "a")) == 6 and stated_frames(BatchVideo(mkv, "b")) is None
    assert stated_frames(BatchVideo(mp4, "a"), trim=Trim(start=0.08)) == 4
    assert stated_frames(BatchVideo(folder, "f"), fps=10, trim=Trim(duration=0.3)) == 3
    frames = BatchFrames([10, None, 20])
    assert frames.total == 45, "the unknown one counts as the mean of those stated"
    frames.end(0, 12, done=True)
    assert frames.total == 12 + 12 + 20, "then as the mean of those done"
    frames.start(1, None)
    frames.end(1, 7, done=True)
    frames.end(2, 0, done=False)
    assert frames.total == 19
    assert BatchFrames([None, None]).total is None


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_that_emulates_it_is_warned_about(tiny_weights, tmp_path, monkeypatch, native):
    clip = make_clip(tmp_path / "dog.mp4", "dog", frames=2)
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    args = ["segment", str(clip), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights), "--flow", "dis",
            "--device", "cpu", "--save", "masks"]
    result = CliRunner().invoke(app, [*args, "--precision", "bf16"])
    assert result.exit_code == 0, result.output
    assert (BF16_WARNING in result.stderr) is not native, result.stderr
    fp32 = CliRunner().invoke(app, [*args, "--overwrite"])
    assert fp32.exit_code == 0 and "warning" not in fp32.stderr, fp32.stderr


@pytest.mark.skipif(runtime.cpu_has_native_bf16(), reason="this CPU computes bf16 natively")
def test_bf16_is_warned_about_on_this_cpu(tiny_weights, tmp_path):
    clip = make_clip(tmp_path / "dog.mp4", "dog", frames=2)
    result = run("segment", str(clip), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights), "--flow", "dis",
                 "--device", "cpu", "--precision", "bf16", "--save", "masks")
    assert result.returncode == 0 and result.stderr.decode().splitlines()[0].startswith(BF16_WARNING), result.stderr
