"""``hmhi segment`` under faults: concurrent runs, signals, crashes, odd outputs and bad option values.

Every test but one runs the real CLI in subprocesses; the long runs segment the 84 breakdance
frames so that there is time to interfere with them while they write.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from test_segment import DAVIS, FRAMES, clip, one_line_error, run, tiny_weights, video_timestamps  # noqa: F401

BREAKDANCE = DAVIS / "JPEGImages" / "480p" / "breakdance"
pytestmark = pytest.mark.skipif(not DAVIS.exists(), reason="../shared/davis16-dev absent")


def _default_interrupt() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(*args: str) -> subprocess.Popen:
    """The CLI as a command typed at a terminal: with SIGINT at its default even when the tests
    run as a background job, whose children inherit an ignored SIGINT (and rightly keep it)."""
    return subprocess.Popen([sys.executable, "-m", "hmhi_cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_default_interrupt)


def start_long_run(out: Path, weights: Path) -> subprocess.Popen:
    """A run over the breakdance frames, returned once it has staged its first mask."""
    process = start("segment", str(BREAKDANCE), "-o", str(out), "--weights", str(weights), "--flow", "dis",
                    "--save", "masks,mask-video")
    deadline = time.monotonic() + 300
    while not any(out.glob(".*/**/*.png")):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "segmentation never started writing"
        time.sleep(0.1)
    return process


def finish(process: subprocess.Popen) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=300)
    return process.returncode, stderr.decode()


def test_a_second_run_into_a_busy_folder_fails_and_no_newcomer_is_replaced(tiny_weights, clip, tmp_path):
    out = tmp_path / "out"
    first = start_long_run(out, tiny_weights)
    first.send_signal(signal.SIGSTOP)  # frozen mid-run, so that it is surely still writing
    second = run("segment", str(clip), "-o", str(out), "--weights", str(tiny_weights), "--flow", "dis", "-q")
    message = one_line_error(second)
    assert second.returncode == 1 and str(out) in message and "another hmhi run is writing" in message, message
    assert any(out.glob(".*/**/*.png")), "the second run must leave the first one's staging alone"
    (out / "mask.mp4").write_bytes(b"made by someone else during the run")
    first.send_signal(signal.SIGCONT)
    code, stderr = finish(first)
    assert code == 2 and "mask.mp4" in stderr and "--overwrite" in stderr and "Traceback" not in stderr, stderr
    assert sorted(p.name for p in out.iterdir()) == ["mask.mp4"]
    assert (out / "mask.mp4").read_bytes() == b"made by someone else during the run"


@pytest.mark.parametrize(("stop", "exit_code", "folder_existed"), [
    (signal.SIGINT, 130, False),
    (signal.SIGTERM, 143, False),
    (signal.SIGHUP, 129, True),
])
def test_signals_stop_cleanly_and_leave_nothing_behind(tiny_weights, tmp_path, stop, exit_code, folder_existed):
    out = tmp_path / "out"
    if folder_existed:
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    process = start_long_run(out, tiny_weights)
    process.send_signal(stop)
    code, stderr = finish(process)
    assert code == exit_code, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr, stderr
    if folder_existed:
        assert [p.name for p in out.iterdir()] == ["notes.txt"]
    else:
        assert not out.exists(), [p.name for p in out.iterdir()]


def test_a_rerun_cleans_what_a_killed_run_left(tiny_weights, clip, tmp_path):
    out = tmp_path / "out"
    killed = start_long_run(out, tiny_weights)
    killed.kill()
    killed.communicate(timeout=60)
    (out / ".alpha.partial").mkdir()  # what runs of earlier versions left: fixed-name staging, temporary videos
    (out / ".alpha.mov.k2j4x9.part.mov").write_bytes(b"half a video")
    assert len(list(out.glob(".*"))) >= 3
    result = run("segment", str(clip), "-o", str(out), "--weights", str(tiny_weights), "--flow", "dis", "-q")
    assert result.returncode == 0, result.stderr.decode()
    assert sorted(p.name for p in out.iterdir()) == [".hmhi-input.json", ".hmhi-settings.json", "mask.mp4", "masks"]
    assert len(list((out / "masks").iterdir())) == FRAMES


def test_overwrite_replaces_files_and_links_without_following_them(tiny_weights, clip, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "masks").write_text("a file where the masks folder goes")
    precious_file = tmp_path / "precious.mp4"
    precious_file.write_bytes(b"keep me")
    (out / "mask.mp4").symlink_to(precious_file)
    precious_folder = tmp_path / "precious"
    precious_folder.mkdir()
    (precious_folder / "00000.png").write_bytes(b"keep me too")
    (out / "probs").symlink_to(precious_folder, target_is_directory=True)
    result = run("segment", str(clip), "-o", str(out), "--weights", str(tiny_weights), "--flow", "dis",
                 "--save", "masks,probs,mask-video", "--overwrite", "--fps", "30", "-q")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b"", "--quiet silences the warning that --fps does nothing here"
    for name in ("masks", "probs"):
        assert (out / name).is_dir() and not (out / name).is_symlink()
        assert len(list((out / name).glob("*.png"))) == FRAMES
    assert not (out / "mask.mp4").is_symlink() and len(video_timestamps(out / "mask.mp4")) == FRAMES
    assert precious_file.read_bytes() == b"keep me"
    assert [p.name for p in precious_folder.iterdir()] == ["00000.png"]
    assert sorted(p.name for p in out.iterdir()) == [".hmhi-input.json", ".hmhi-settings.json", "mask.mp4", "masks", "probs"]


def test_a_dangling_link_as_the_output_folder_is_named_and_replaced_with_overwrite(tiny_weights, clip, tmp_path):
    out = tmp_path / "out"
    nowhere = tmp_path / "gone" / "results"
    out.symlink_to(nowhere, target_is_directory=True)
    common = (str(clip), "-o", str(out), "--weights", str(tiny_weights), "--flow", "dis", "--save", "masks", "-q")
    message = one_line_error(run("segment", *common))
    assert message == (f"error: cannot use {out} as output folder: it is a dangling link (to {nowhere}, which does not "
                       "exist); pass --overwrite to replace the link"), message
    result = run("segment", *common, "--overwrite")
    assert result.returncode == 0, result.stderr.decode()
    assert out.is_dir() and not out.is_symlink() and len(list((out / "masks").glob("*.png"))) == FRAMES
    assert not (tmp_path / "gone").exists(), "the folder is made where the link was, not where it pointed"


BAD_OPTION_VALUES = [
    (("--memory-limit", "-1"), ("--memory-limit", "at least 1")),
    (("--memory-limit", "0"), ("--memory-limit", "at least 1")),
    (("--fps", "inf"), ("--fps", "0.01", "1000")),
    (("--fps", "1e-9"), ("--fps", "0.01", "1000")),
    (("--threshold", "0"), ("--threshold", "strictly between 0 and 1")),
]


def test_bad_option_values_give_one_line_and_exit_2(tiny_weights, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(2):
        cv2.imwrite(str(frames / f"{index}.png"), np.full((64, 96, 3), 60 * index, np.uint8))
    # A missing input for --size: were 4096 accepted, the run must not start (it takes 12 GB).
    cases = [((str(frames), *option), expected) for option, expected in BAD_OPTION_VALUES]
    cases.append(((str(tmp_path / "missing.mp4"), "--size", "4096"), ("--size", "2048")))
    processes = [(start("segment", *args, "-o", str(tmp_path / f"out{number}"), "--weights", str(tiny_weights),
                        "--flow", "dis"), expected) for number, (args, expected) in enumerate(cases)]
    for number, (process, expected) in enumerate(processes):
        stdout, stderr = process.communicate(timeout=300)
        message = one_line_error(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
        assert process.returncode == 2, (cases[number][0], message)
        assert all(part in message for part in expected), (cases[number][0], message)
        assert not (tmp_path / f"out{number}").exists(), cases[number][0]


def test_commit_interrupted_by_a_signal_still_lands_every_output(tiny_weights, clip, tmp_path):
    """SIGTERM sent right after the first output is renamed into place (by a patched rename)."""
    signal_after_first_commit = (
        "import os, signal, sys\n"
        "from hmhi_cli.cli import main\n"
        "out = os.path.abspath(sys.argv[sys.argv.index('-o') + 1])\n"
        "def signalling(rename):\n"
        "    def wrapped(source, target, *args, **kwargs):\n"
        "        rename(source, target, *args, **kwargs)\n"
        "        target = os.path.abspath(target)\n"
        "        if os.path.dirname(target) == out and not os.path.basename(target).startswith('.'):\n"
        "            os.rename = os.replace = rename\n"
        "            os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return wrapped\n"
        "os.rename, os.replace = signalling(os.rename), signalling(os.replace)\n"
        "main()\n"
    )
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-c", signal_after_first_commit, "segment", str(clip), "-o", str(out),
                             "--weights", str(tiny_weights), "--flow", "dis", "--save", "masks,mask-video,overlay"],
                            capture_output=True, timeout=300)
    stderr = result.stderr.decode()
    assert result.returncode == 143 and "Traceback" not in stderr, stderr
    assert sorted(p.name for p in out.iterdir()) == [".hmhi-input.json", ".hmhi-settings.json", "mask.mp4", "masks", "overlay.mp4"]


def test_a_failed_commit_puts_everything_back(tmp_path, monkeypatch):
    from hmhi_cli.errors import OutputError
    from hmhi_cli.output_folder import OutputFolder

    out = tmp_path / "out"
    out.mkdir()
    (out / "mask.mp4").write_bytes(b"old video")
    finals = [out / "masks", out / "mask.mp4", out / "overlay.mp4"]
    real_rename = os.rename

    def rename_failing_on_overlay(source, target):
        if Path(target) == out / "overlay.mp4":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_rename(source, target)

    with OutputFolder(out) as folder:
        (folder.staging / "masks").mkdir()
        (folder.staging / "masks" / "00000.png").write_bytes(b"new mask")
        (folder.staging / "mask.mp4").write_bytes(b"new video")
        (folder.staging / "overlay.mp4").write_bytes(b"new overlay")
        monkeypatch.setattr(os, "rename", rename_failing_on_overlay)
        with pytest.raises(OutputError, match="overlay.mp4: No space left on device"):
            folder.commit(finals, overwrite=True)
        monkeypatch.undo()
    assert [p.name for p in out.iterdir()] == ["mask.mp4"]
    assert (out / "mask.mp4").read_bytes() == b"old video"


def test_a_failed_run_removes_the_folders_it_created_and_only_those(tiny_weights, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for index, width in enumerate((96, 96, 80)):  # the last image's size differs: the run fails mid-way
        cv2.imwrite(str(frames / f"{index}.png"), np.full((64, width, 3), 60 * index, np.uint8))
    created = tmp_path / "new" / "out"
    existing = tmp_path / "existing"
    existing.mkdir()
    processes = [start("segment", str(frames), "-o", str(folder), "--weights", str(tiny_weights), "--flow", "dis")
                 for folder in (created, existing)]
    for process in processes:
        code, stderr = finish(process)
        assert code == 2 and "2.png" in stderr and "Traceback" not in stderr, stderr
    assert not (tmp_path / "new").exists()
    assert existing.is_dir() and list(existing.iterdir()) == []


def test_options_without_effect_are_warned_about(clip, tiny_weights, tmp_path):
    result = run("segment", str(clip), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights), "--flow", "dis",
                 "--save", "masks", "--lossless", "--background", "green", "--fps", "30")
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3, stderr
    for option, warning in zip(("--lossless", "--background", "--fps"), warnings):
        assert option in warning, warnings


def test_odd_frame_sizes_are_kept_in_every_video(tiny_weights, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(3):
        cv2.imwrite(str(frames / f"{index}.png"), np.full((63, 95, 3), 50 + 60 * index, np.uint8))
    out = tmp_path / "out"
    result = run("segment", str(frames), "-o", str(out), "--weights", str(tiny_weights), "--flow", "dis",
                 "--save", "mask-video,overlay,alpha", "--background", "green", "-q")
    assert result.returncode == 0, result.stderr.decode()
    for name in ("mask.mp4", "overlay.mp4", "composite.mp4"):
        with av.open(str(out / name)) as container:
            frame = next(container.decode(video=0))
            assert (frame.width, frame.height) == (95, 63), name


def test_an_empty_output_folder_is_refused_rather_than_the_current_folder_used(tiny_weights, clip, tmp_path):
    """``-o "$OUT"`` with OUT unset: one video, and a batch (run in an empty folder: this code, not an installed one)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for inputs in ([str(clip)], [str(clip), str(clip.parent)]):
        result = subprocess.run([sys.executable, "-m", "hmhi_cli", "segment", *inputs, "-o", "", "--weights",
                                 str(tiny_weights), "--flow", "dis"], capture_output=True, timeout=600, cwd=tmp_path,
                                env=env)
        message = one_line_error(result)
        assert result.returncode == 2 and "-o/--out is empty" in message, message
        assert list(tmp_path.iterdir()) == [], inputs


def test_a_write_that_fails_exits_1_and_leaves_nothing(tiny_weights, clip, tmp_path):
    """Files may grow to 20 kB only (as on a full disk, the write fails): overlay.mp4 grows past it."""
    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "hmhi_cli", "segment", str(clip), "-o", str(out), "--weights",
                             str(tiny_weights), "--flow", "dis", "--save", "masks,overlay", "-q"],
                            capture_output=True, timeout=600, preexec_fn=small_files)
    message = one_line_error(result)
    assert result.returncode == 1 and "cannot write" in message and "File too large" in message, message
    assert not out.exists()
