"""The simplest motion baseline, for comparison with trained weights: foreground = pixels whose
DIS flow differs from the frame's median flow (camera motion) by more than an Otsu threshold.

    .venv/bin/python benchmarks/motion_baseline.py [--sequences blackswan,dog,kite-surf]

Scores it with the DAVIS protocol on ../shared/davis16-dev.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

from hmhi_cli.data.layouts import load_dataset
from hmhi_cli.evaluation import evaluate
from hmhi_cli.flow import DisFlowEstimator, flow_images
from hmhi_cli.video import read_image, write_image

DAVIS = Path(__file__).resolve().parents[1].parent / "shared" / "davis16-dev"


def motion_mask(flow: np.ndarray) -> np.ndarray:
    residual = np.linalg.norm(flow - np.median(flow.reshape(-1, 2), axis=0), axis=2)
    scaled = np.clip(residual / max(float(residual.max()), 1e-6) * 255, 0, 255).astype(np.uint8)
    _, mask = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", help="comma-separated sequences (default: all of davis16-dev)")
    args = parser.parse_args()
    names = args.sequences.split(",") if args.sequences else None
    estimator = DisFlowEstimator()
    with tempfile.TemporaryDirectory(prefix="hmhi-motion-") as pred:
        for sequence in load_dataset(DAVIS, sequences=names):
            frames = (read_image(path) for path in sequence.frames)
            for path, item in zip(sequence.frames, flow_images(frames, estimator)):
                write_image(Path(pred) / sequence.name / f"{path.stem}.png", motion_mask(item.flow_raw))
        result = evaluate(DAVIS, pred, sequences=names).to_dict()
    print(f"motion baseline (DIS, median-compensated, Otsu): J&F {result['J&F']:.3f} "
          f"J {result['J']['mean']:.3f} F {result['F']['mean']:.3f}")
    for name, scores in result["sequences"].items():
        print(f"  {name:16} J {scores['J']['mean']:.3f} F {scores['F']['mean']:.3f}")


if __name__ == "__main__":
    main()
