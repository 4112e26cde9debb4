"""``hmhi eval --weights``: from checkpoint to table in one command, with or without precomputed flow;
the --pred folder is resumed with the same settings, never mixed with other ones, and never left half-written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hmhi_cli.evaluation import FOREGROUND_THRESHOLD
from hmhi_cli.model import build_model
from hmhi_cli.weights import save_weights
from test_segment import one_line_error

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


def hmhi(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hmhi_cli", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def tiny_weights(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    save_weights(build_model("mit_b0"), path, input_size=64)
    return path


def eval_into(root: Path, weights: Path, pred: Path | None, *extra: str, env: dict[str, str] | None = None):
    target = () if pred is None else ("--pred", str(pred))
    return hmhi("eval", "--dataset", "davis16", "--root", str(root), "--weights", str(weights), "--flow", "dis",
                *target, "-q", *extra, env=env)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder`` (hidden ones too): its bytes and modification time."""
    return {str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*")) if path.is_file()}


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
    # Computed flow is sampled on the model's grid, precomputed images are full-size renderings
    # resized to it: the same flow, rendered at two scales, so the scores agree closely.
    assert first["J&F"] == pytest.approx(second["J&F"], abs=0.01)
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


def test_pred_of_other_weights_is_replaced_only_with_overwrite(tmp_path):
    first, second = tiny_weights(tmp_path / "first.safetensors", 0), tiny_weights(tmp_path / "second.safetensors", 1)
    root, pred = small_davis(tmp_path / "davis", frames=3), tmp_path / "pred"
    assert eval_into(root, first, pred).returncode == 0
    made_by_first = snapshot(pred)
    maps = sorted(name for name in made_by_first if name.endswith(".png"))
    assert maps == [f"{sequence}/{index:05d}.png" for sequence in SEQUENCES for index in range(3)]

    message = one_line_error(eval_into(root, second, pred))
    assert "--overwrite" in message and "first.safetensors" in message
    assert snapshot(pred) == made_by_first

    assert eval_into(root, second, pred, "--overwrite").returncode == 0
    made_by_second = snapshot(pred)
    assert sorted(name for name in made_by_second if name.endswith(".png")) == maps
    assert any(made_by_second[name][0] != made_by_first[name][0] for name in maps)
    manifest = json.loads((pred / "hmhi-predictions.json").read_text())
    assert manifest["settings"]["weights"] == "second.safetensors" and manifest["finished"] == list(SEQUENCES)

    assert eval_into(root, second, pred).returncode == 0  # same settings: resumed, nothing left to do
    assert snapshot(pred) == made_by_second


def test_pred_holding_other_predictions_is_refused(tmp_path):
    weights = tiny_weights(tmp_path / "tiny.safetensors", 0)
    root, pred = small_davis(tmp_path / "davis", frames=3), tmp_path / "pred"
    (pred / "dog").mkdir(parents=True)
    shutil.copy(DAVIS / "Annotations" / "480p" / "dog" / "00000.png", pred / "dog")
    before = snapshot(pred)
    assert "--overwrite" in one_line_error(eval_into(root, weights, pred))
    assert snapshot(pred) == before


def test_an_error_leaves_finished_sequences_only_and_the_run_resumes(tmp_path):
    weights = tiny_weights(tmp_path / "tiny.safetensors", 0)
    root, pred = small_davis(tmp_path / "davis"), tmp_path / "pred"
    broken = root / "JPEGImages" / "480p" / "dog" / "00003.jpg"
    frame = broken.read_bytes()
    broken.write_bytes(b"not a jpeg")

    assert "00003.jpg" in one_line_error(eval_into(root, weights, pred))
    assert sorted(path.relative_to(pred).as_posix() for path in pred.rglob("*")) == [
        "blackswan", *(f"blackswan/{index:05d}.png" for index in range(6)), "hmhi-predictions.json"]
    assert json.loads((pred / "hmhi-predictions.json").read_text())["finished"] == ["blackswan"]

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    one_line_error(eval_into(root, weights, None, env={"TMPDIR": str(temporary)}))
    assert list(temporary.glob("hmhi-eval-*")) == []

    broken.write_bytes(frame)
    finished_before = snapshot(pred / "blackswan")
    resumed = eval_into(root, weights, pred, "--json", "-")
    assert resumed.returncode == 0, resumed.stderr
    assert snapshot(pred / "blackswan") == finished_before
    assert sorted(path.name for path in (pred / "dog").iterdir()) == [f"{index:05d}.png" for index in range(6)]
    assert not json.loads(resumed.stdout)["missing"]


def test_eval_scores_the_masks_segment_writes(tmp_path):
    """``hmhi segment``'s masks are exactly the foreground ``hmhi eval --weights`` scores."""
    weights = tiny_weights(tmp_path / "tiny.safetensors", 0)
    root = small_davis(tmp_path / "davis", frames=4)
    pred = tmp_path / "pred"
    assert eval_into(root, weights, pred).returncode == 0
    out = tmp_path / "segmented"
    frames = root / "JPEGImages" / "480p" / "dog"
    result = hmhi("segment", str(frames), "-o", str(out), "--weights", str(weights), "--flow", "dis", "--save", "masks",
                  "-q")
    assert result.returncode == 0, result.stderr
    masks, mattes = sorted((out / "masks").glob("*.png")), sorted((pred / "dog").glob("*.png"))
    assert len(masks) == len(mattes) == 4
    for mask, matte in zip(masks, mattes):
        scored = cv2.imread(str(matte), cv2.IMREAD_GRAYSCALE) > FOREGROUND_THRESHOLD
        np.testing.assert_array_equal(cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE), np.where(scored, 255, 0))


def test_predictions_of_raw_soft_maps_are_not_resumed_as_refined(tmp_path):
    """A folder of an earlier version (raw soft maps, no "maps" in its manifest) is not mixed with refined mattes."""
    weights = tiny_weights(tmp_path / "tiny.safetensors", 0)
    root, pred = small_davis(tmp_path / "davis", frames=3), tmp_path / "pred"
    assert eval_into(root, weights, pred).returncode == 0
    manifest_path = pred / "hmhi-predictions.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["settings"]["maps"] == "refined"
    del manifest["settings"]["maps"]  # what earlier versions wrote beside their raw soft maps
    manifest_path.write_text(json.dumps(manifest))
    message = one_line_error(eval_into(root, weights, pred))
    assert "soft maps" in message and "--overwrite" in message
    assert eval_into(root, weights, pred, "--overwrite").returncode == 0
    assert json.loads(manifest_path.read_text())["settings"]["maps"] == "refined"
