"""``hmhi eval`` end to end on real DAVIS-16 frames, checked against an independent computation."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DAVIS_DEV = SHARED / "davis16-dev"
SEQUENCES = ("blackswan", "drift-straight", "kite-surf")
MISSING_FRAME = "00010"
TOLERANCE = 8  # ceil(0.008 * hypot(480, 854))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DAVIS_DEV.is_dir(), reason=f"shared DAVIS-16 sample not found at {DAVIS_DEV}"),
]


def run_hmhi(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "hmhi_cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


def truth(seq: str, stem: str) -> np.ndarray:
    return cv2.imread(str(DAVIS_DEV / "Annotations/480p" / seq / f"{stem}.png"), cv2.IMREAD_GRAYSCALE) > 0


def write_predictions(folder: Path, sequences: tuple[str, ...],
                      image_for: Callable[[str, str, np.ndarray], np.ndarray | None]) -> Path:
    """Write ``image_for(sequence, stem, mask)`` as the prediction of every annotated frame of
    ``sequences`` (``mask``: the ground truth as 0/255; None leaves the frame without one)."""
    for seq in sequences:
        (folder / seq).mkdir()
        for path in sorted((DAVIS_DEV / "Annotations/480p" / seq).glob("*.png")):
            image = image_for(seq, path.stem, np.where(truth(seq, path.stem), 255, 0).astype(np.uint8))
            if image is not None:
                cv2.imwrite(str(folder / seq / path.name), image)
    return folder


@pytest.fixture(scope="module")
def predictions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """blackswan: eroded masks; drift-straight: eroded, one frame missing; kite-surf: half-size soft maps."""
    kernel = np.ones((7, 7), dtype=np.uint8)

    def image_for(seq: str, stem: str, mask: np.ndarray) -> np.ndarray | None:
        if seq == "kite-surf":
            return cv2.resize(cv2.GaussianBlur(mask, (0, 0), 4), (427, 240), interpolation=cv2.INTER_AREA)
        if seq == "drift-straight" and stem == MISSING_FRAME:
            return None
        return cv2.erode(mask, kernel)

    return write_predictions(tmp_path_factory.mktemp("pred"), SEQUENCES, image_for)


def predicted(pred: Path, seq: str, stem: str) -> np.ndarray:
    path = pred / seq / f"{stem}.png"
    if not path.exists():
        return np.zeros((480, 854), dtype=bool)
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    return cv2.resize(grey, (854, 480), interpolation=cv2.INTER_NEAREST) > 127


def edges(mask: np.ndarray) -> np.ndarray:
    """seg2bmap as neighbour differences: right (all but the last column), lower (all but the last row), diagonal."""
    result = np.zeros_like(mask)
    result[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    result[:-1, :] |= mask[:-1, :] != mask[1:, :]
    result[:-1, :-1] |= mask[:-1, :-1] != mask[1:, 1:]
    return result


def near(target: np.ndarray) -> np.ndarray:
    """Pixels within TOLERANCE (Euclidean) of a ``target`` pixel, by distance transform instead of dilation."""
    distance = cv2.distanceTransform(np.where(target, 0, 255).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return distance <= TOLERANCE + 1e-6


def expected_scores(truth_mask: np.ndarray, predicted_mask: np.ndarray) -> tuple[float, float]:
    union = np.logical_or(truth_mask, predicted_mask).sum()
    j = np.logical_and(truth_mask, predicted_mask).sum() / union if union else 1.0
    truth_edges, predicted_edges = edges(truth_mask), edges(predicted_mask)
    if not truth_edges.any() or not predicted_edges.any():
        return j, float(truth_edges.any() == predicted_edges.any())
    precision = (predicted_edges & near(truth_edges)).sum() / predicted_edges.sum()
    recall = (truth_edges & near(predicted_edges)).sum() / truth_edges.sum()
    return j, 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def expected_statistics(values: list[float]) -> dict[str, float]:
    assert len(values) == 48  # 50 frames without the first and the last
    # decay bins: round(linspace(1, 48, 5)) - 1 = 0, 12, 24, 35, 47 -> first bin 0..12, last bin 35..47
    return {
        "mean": float(np.mean(values)),
        "recall": float(np.mean(np.array(values) > 0.5)),
        "decay": float(np.mean(values[:13]) - np.mean(values[35:])),
    }


def test_eval_table_json_and_csv(predictions: Path, tmp_path: Path) -> None:
    json_path, csv_path = tmp_path / "out/eval.json", tmp_path / "out/eval.csv"
    completed = run_hmhi(
        "eval", "--dataset", "davis16", "--root", str(DAVIS_DEV), "--pred", str(predictions),
        "--sequences", ",".join(SEQUENCES), "--json", str(json_path), "--csv", str(csv_path),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert f"drift-straight/{MISSING_FRAME}.png" in completed.stderr and "warning" in completed.stderr
    assert "Traceback" not in completed.stderr

    data = json.loads(json_path.read_text())
    assert list(data) == ["dataset", "J", "F", "J&F", "sequences", "missing"]
    assert data["dataset"] == "davis16" and data["missing"] == [f"drift-straight/{MISSING_FRAME}.png"]
    assert list(data["sequences"]) == list(SEQUENCES)
    for seq in SEQUENCES:
        stems = [f"{index:05d}" for index in range(1, 49)]
        scores = [expected_scores(truth(seq, stem), predicted(predictions, seq, stem)) for stem in stems]
        for measure, values in (("J", [j for j, _ in scores]), ("F", [f for _, f in scores])):
            expected = expected_statistics(values)
            for key, value in expected.items():
                assert data["sequences"][seq][measure][key] == pytest.approx(value, abs=1e-9), (seq, measure, key)
    for measure in ("J", "F"):
        for key in ("mean", "recall", "decay"):
            per_sequence = [data["sequences"][seq][measure][key] for seq in SEQUENCES]
            assert data[measure][key] == pytest.approx(np.mean(per_sequence))
    assert data["J&F"] == pytest.approx((data["J"]["mean"] + data["F"]["mean"]) / 2)
    drift = data["sequences"]["drift-straight"]["J"]
    assert drift["recall"] == pytest.approx(47 / 48)  # the missing frame scores 0
    assert 0.5 < data["J"]["mean"] < 0.99 and math.isfinite(data["F"]["decay"])

    lines = completed.stdout.splitlines()
    for seq in SEQUENCES:
        row = next(line for line in lines if f" {seq} " in line)
        j_and_f = (data["sequences"][seq]["J"]["mean"] + data["sequences"][seq]["F"]["mean"]) / 2
        assert f"{data['sequences'][seq]['J']['mean']:.3f}" in row and f"{j_and_f:.3f}" in row
    mean_row = next(line for line in lines if line.lstrip("│┃| ").startswith("mean "))
    assert f"{data['J&F']:.3f}" in mean_row and f"{data['F']['mean']:.3f}" in mean_row and " 144 " in mean_row

    rows = list(csv.DictReader(csv_path.open()))
    assert [row["sequence"] for row in rows] == [*SEQUENCES, "mean"]
    assert float(rows[-1]["J&F"]) == pytest.approx(data["J&F"])
    assert rows[1]["missing"] == "1" and rows[1]["frames"] == "48"


def test_eval_json_on_stdout(predictions: Path) -> None:
    completed = run_hmhi(
        "eval", "--dataset", "davis16", "--root", str(DAVIS_DEV), "--pred", str(predictions),
        "--sequences", "blackswan", "--json", "-", "--quiet",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    data = json.loads(completed.stdout)
    assert list(data["sequences"]) == ["blackswan"] and data["missing"] == []


def test_eval_bad_root_is_one_line(predictions: Path, tmp_path: Path) -> None:
    completed = run_hmhi("eval", "--dataset", "davis16", "--root", str(tmp_path / "nope"), "--pred", str(predictions))
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1
    assert "dataset folder not found" in completed.stderr and "nope" in completed.stderr
