"""What the real ``hmhi`` command line says: version, help, progress in logs, unreadable weights files."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import torch

from hmhi_cli import __version__
from test_segment import one_line_error

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    """Run ``hmhi ARGS`` (or ``python -c CODE ARGS``) in a subprocess, stdout and stderr captured (no terminal)."""
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "hmhi_cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "160"}
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)


def test_version_flag_and_bare_command():
    version = run("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"hmhi {__version__}"
    bare = run()
    assert bare.returncode == 0, bare.stderr
    assert "Usage" in bare.stdout and "segment" in bare.stdout
    group = run("flow")
    assert group.returncode == 0, group.stderr
    assert "precompute" in group.stdout


def test_boolean_flags_are_shown_as_plain_flags_in_help():
    result = run("segment", "--help")
    assert result.returncode == 0, result.stderr
    lines = {name: next(line for line in result.stdout.splitlines() if name in line)
             for name in ("--overwrite", "--quiet", "--help", "--size")}
    assert "<int>" in lines["--size"]
    for name in ("--overwrite", "--quiet", "--help"):
        assert "<" not in lines[name], lines[name]


PROGRESS_LINE = re.compile(r"^all sequences: (\d+)/24 \(([0-9.]+)/s, ETA (\d+:\d\d:\d\d)\)$")


def test_progress_lines_in_logs_when_stderr_is_not_a_terminal(tmp_path):
    rng = np.random.default_rng(0)
    for sequence in ("a", "b"):
        (tmp_path / sequence / "frame").mkdir(parents=True)
        for index in range(12):
            image = cv2.GaussianBlur(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), (0, 0), 2)
            cv2.imwrite(str(tmp_path / sequence / "frame" / f"{index:05d}.png"), image)
    code = textwrap.dedent("""
        import sys
        from hmhi_cli.cli import common, main
        common.PLAIN_PROGRESS_INTERVAL_S = 0.02
        sys.argv = ["hmhi", *sys.argv[1:]]
        main()
    """)
    result = run("flow", "precompute", str(tmp_path), "--flow", "dis", code=code)
    assert result.returncode == 0, result.stderr
    assert "24 computed" in result.stdout
    reports = [PROGRESS_LINE.match(line) for line in result.stderr.splitlines()]
    counts = [int(match[1]) for match in reports if match]
    assert counts, result.stderr
    assert counts == sorted(counts) and counts[-1] <= 24
    quiet = run("flow", "precompute", str(tmp_path), "--flow", "dis", "-q", code=code)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


class Pickled:
    """Stands for any pickled object: loading it would run code."""


def test_unreadable_weights_files_are_named_for_what_they_are(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("these are release notes, not weights\n")
    message = one_line_error(run("weights", "info", str(text)))
    assert f"{text}: not a PyTorch checkpoint (not a zip/pickle file)" in message, message
    module = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), module)
    protocol_4 = tmp_path / "protocol4.pth"
    protocol_4.write_bytes(pickle.dumps({"network": Pickled()}, protocol=4))
    for path in (module, protocol_4):
        message = one_line_error(run("weights", "info", str(path)))
        assert str(path) in message and "pickled code" in message and "never executes" in message, message
