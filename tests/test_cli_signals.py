"""SIGTERM and SIGHUP stop every long command as Ctrl-C does, not only ``hmhi segment``."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DAVIS = Path(__file__).resolve().parents[1].parent / "shared" / "davis16-dev"
pytestmark = pytest.mark.skipif(not DAVIS.exists(), reason="../shared/davis16-dev absent")


@pytest.mark.parametrize(("stop", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_flow_precompute_stops_cleanly_on_a_termination_signal(tmp_path, stop, exit_code):
    out = tmp_path / "flows"
    process = subprocess.Popen([sys.executable, "-m", "hmhi_cli", "flow", "precompute", str(DAVIS), "--out", str(out),
                                "--flow", "dis", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not any(out.glob("**/*.jpg")):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "flow precompute never started writing"
        time.sleep(0.05)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == exit_code, stderr.decode()
    assert stderr.decode().strip() == f"interrupted ({stop.name})"
