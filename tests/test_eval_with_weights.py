"""``hmhi eval --weights``: from checkpoint to table in one command, with or without precomputed flow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hmhi_cli.model import build_model
from hmhi_cli.weights import save_weights

DAVIS = Path(__file__).resolve().parents[1].parent / "shared" / "davis16-dev"
SEQUENCES = ("blackswan", "dog")
pytestmark = pytest.mark.skipif(not DAVIS.exists(), reason="../shared/davis16-dev absent")


def small_davis(root: Path, frames: int = 6) -> Path:
    for sequence in SEQUENCES:
        for kind, suffix in (("JPEGImages", "jpg"), ("Annotations", "png")):
            target = root / kind / "480p" / sequence
            target.mkdir(parents=True)
            for index in range(frames):
                shutil.copy(DAVIS / kind / "480p" / sequence / f"{index:05d}.{suffix}", target)
    (root / "ImageSets" / "2016").mkdir(parents=True)
    (root / "ImageSets" / "2016" / "val.txt").write_text("\n".join(SEQUENCES) + "\n")
    return root


def hmhi(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hmhi_cli", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_eval_with_weights_computed_and_precomputed_flow_agree(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "tiny.safetensors"
    save_weights(build_model("mit_b0"), weights, input_size=64)
    root = small_davis(tmp_path / "davis")
    flows = tmp_path / "flows"
    assert hmhi("flow", "precompute", str(root), "--flow", "dis", "--format", "png", "--out", str(flows), "-q").returncode == 0

    pred = tmp_path / "pred"
    computed = hmhi("eval", "--dataset", "davis16", "--root", str(root), "--weights", str(weights), "--flow", "dis",
                    "--pred", str(pred), "--json", "-", "-q")
    assert computed.returncode == 0, computed.stderr
    assert sorted(p.name for p in (pred / "dog").iterdir()) == [f"{i:05d}.png" for i in range(6)]
    precomputed = hmhi("eval", "--dataset", "davis16", "--root", str(root), "--weights", str(weights),
                       "--flow-dir", str(flows), "--json", "-", "-q")
    assert precomputed.returncode == 0, precomputed.stderr
    first, second = json.loads(computed.stdout), json.loads(precomputed.stdout)
    assert set(first["sequences"]) == set(SEQUENCES) and not first["missing"]
    assert first["J&F"] == pytest.approx(second["J&F"], abs=1e-9)
    assert 0.0 <= first["J&F"] <= 1.0


def test_eval_needs_pred_or_weights(tmp_path):
    result = hmhi("eval", "--dataset", "davis16", "--root", str(DAVIS))
    assert result.returncode != 0 and "--weights" in result.stderr and "Traceback" not in result.stderr


def test_eval_with_precomputed_flow_missing_is_one_line(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "tiny.safetensors"
    save_weights(build_model("mit_b0"), weights, input_size=64)
    root = small_davis(tmp_path / "davis", frames=3)
    result = hmhi("eval", "--dataset", "davis16", "--root", str(root), "--weights", str(weights),
                  "--flow-dir", str(tmp_path / "empty"), "-q")
    assert result.returncode != 0 and "hmhi flow precompute" in result.stderr
    assert result.stderr.strip().count("\n") == 0
