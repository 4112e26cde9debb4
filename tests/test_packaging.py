"""A built wheel is a complete install: every package of the source tree and the default weights."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True, text=True)
    (path,) = out.glob("hmhi-*.whl")
    return path


def test_wheel_carries_the_default_weights_and_every_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "hmhi_cli/default_weights/hmhi_default.safetensors" in names
    assert "hmhi_cli/default_weights/MODEL_CARD.md" in names
    source_modules = {str(path.relative_to(ROOT)) for path in (ROOT / "hmhi_cli").rglob("*.py")}
    assert source_modules <= names, f"missing from the wheel: {sorted(source_modules - names)}"


def test_installed_wheel_finds_its_default_weights(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, text=True)
    env = {key: value for key, value in os.environ.items() if key != "HMHI_WEIGHTS"} | {"PYTHONPATH": str(target)}
    code = "from hmhi_cli.weights import default_weights_path, describe; p = default_weights_path(); print(p); describe(p)"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert Path(result.stdout.strip()).is_relative_to(target)
