"""Stop signals sent at named points of a batch, where a handler that raises would lose them.

Each run is the real CLI, started by a small Python program that sends the signal to its own
process from one hooked call: so the signal arrives exactly there, every time, with no sleep.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from test_segment import DAVIS, make_clip, tiny_weights  # noqa: F401

pytestmark = pytest.mark.skipif(not DAVIS.exists(), reason="../shared/davis16-dev absent")
OUTPUTS = [".hmhi-input.json", ".hmhi-settings.json", "mask.mp4", "masks"]

SIGNAL_AT = """
import io, os, shutil, sys
import av
from hmhi_cli.cli import main

point, target, number = sys.argv[1], sys.argv[2], int(sys.argv[3])
del sys.argv[1:4]
pending = [number]
opens_to_skip = [1] if point == "pyav-read" else []  # the batch's first open of a video only reads its frame count


def send_once():
    if pending:
        os.kill(os.getpid(), pending.pop())


if point in ("pyav-read", "pyav-probe"):  # PyAV reads from C through Python callbacks, which swallow what they raise
    class SignallingFile(io.FileIO):
        def read(self, size=-1):
            send_once()
            return super().read(size)

    real_open = av.open

    def open_signalling(file, *args, **kwargs):
        if isinstance(file, str) and os.path.basename(file) == target:
            if opens_to_skip:
                opens_to_skip.pop()
            else:
                file = SignallingFile(file)
        return real_open(file, *args, **kwargs)

    av.open = open_signalling
elif point == "staging-removal":  # just after the commit of the video named target
    real_rmtree = shutil.rmtree

    def rmtree_signalling(path, *args, **kwargs):
        path = os.fspath(path)
        if os.path.basename(path).startswith(".hmhi-segment-") and os.path.basename(os.path.dirname(path)) == target:
            send_once()
        return real_rmtree(path, *args, **kwargs)

    shutil.rmtree = rmtree_signalling
main()
"""


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """c0.mp4, c1.mp4, c2.mp4: one frame each."""
    folder = tmp_path_factory.mktemp("clips")
    for index, sequence in enumerate(("blackswan", "dog", "cows")):
        make_clip(folder / f"c{index}.mp4", sequence, frames=1)
    return folder


def signalled_batch(point: str, target: str, stop: signal.Signals, clips: Path, out: Path,
                    weights: Path) -> subprocess.CompletedProcess:
    """``hmhi segment CLIPS -o OUT`` with ``stop`` sent at ``point`` of the video ``target``; SIGINT at
    its default even when the tests run as a background job (whose children inherit it ignored)."""
    return subprocess.run(
        [sys.executable, "-c", SIGNAL_AT, point, target, str(int(stop)), "segment", str(clips), "-o", str(out),
         "--weights", str(weights), "--flow", "dis"],
        capture_output=True, timeout=600, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.parametrize(("stop", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_pyav_reads_the_next_video_stops_the_batch(clips, tiny_weights, tmp_path, stop, exit_code):
    out = tmp_path / "out"
    result = signalled_batch("pyav-read", "c1.mp4", stop, clips, out, tiny_weights)
    stderr = result.stderr.decode()
    assert result.returncode == exit_code, stderr
    assert stderr.strip().splitlines()[-1] == f"interrupted ({stop.name})", stderr
    assert "Traceback" not in stderr and "ignored" not in stderr, stderr
    assert sorted(p.name for p in out.iterdir()) == ["c0"], "c1 is stopped before its commit, c2 never begins"
    assert sorted(p.name for p in (out / "c0").iterdir()) == OUTPUTS


def test_a_signal_while_a_batch_reads_the_frame_counts_stops_it_before_any_video(clips, tiny_weights, tmp_path):
    out = tmp_path / "out"
    result = signalled_batch("pyav-probe", "c1.mp4", signal.SIGTERM, clips, out, tiny_weights)
    stderr = result.stderr.decode()
    assert result.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted (SIGTERM)", stderr
    assert "Traceback" not in stderr and "ignored" not in stderr, stderr
    assert not out.exists(), "no video began"


def test_a_signal_just_after_a_commit_still_unlocks_and_cleans_the_folder(clips, tiny_weights, tmp_path):
    out = tmp_path / "out"
    result = signalled_batch("staging-removal", "c0", signal.SIGHUP, clips, out, tiny_weights)
    stderr = result.stderr.decode()
    assert result.returncode == 129, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted (SIGHUP)" and "Traceback" not in stderr, stderr
    assert sorted(p.name for p in out.iterdir()) == ["c0"]
    assert sorted(p.name for p in (out / "c0").iterdir()) == OUTPUTS, "no lock, no staging folder"
