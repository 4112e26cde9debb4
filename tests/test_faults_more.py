"""The rest of issue 18's faults, through the real ``hmhi`` command line: writes that fail, tiny
frames, a corrupt Matroska middle, a report cut by Ctrl-C, damaged checkpoints, seeded training."""

from __future__ import annotations

import subprocess
import sys

from test_flow import REPO, reference_dataset


def limit_file_size_to_100_bytes() -> None:
    """In a child process: a file that grows past 100 bytes fails to write, as on a full disk."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))


def test_flow_images_that_cannot_be_written_are_one_line_with_exit_1(tmp_path):
    root = reference_dataset(tmp_path / "data", 2)
    result = subprocess.run([sys.executable, "-m", "hmhi_cli", "flow", "precompute", str(root), "--flow", "dis", "-q"],
                            capture_output=True, text=True, cwd=REPO, timeout=300,
                            preexec_fn=limit_file_size_to_100_bytes)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr, result.stderr
    assert "cannot write" in result.stderr and "File too large" in result.stderr, result.stderr
    assert not list((root / "clip" / "flow").iterdir()), "no partial flow image is left"
