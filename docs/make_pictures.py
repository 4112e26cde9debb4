"""Make the README's before/after picture by running the real CLI on DAVIS-16 train frames.

    .venv/bin/python docs/make_pictures.py [--out docs/cutout-before-after.jpg]

Each row is one sequence of ``../shared/davis16-train``: the source frame, then the cutout that
``hmhi segment --save alpha`` writes (default weights and settings) over a checkerboard, so
anything see-through shows. The first ``--frames`` frames are segmented and the last is shown,
so the memory has filled as in a real run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FRAMES = ROOT.parent / "shared" / "davis16-train" / "JPEGImages" / "480p"
SEQUENCES = ("lucia", "horsejump-low", "rhino")


def checkerboard(height: int, width: int, square: int = 16) -> np.ndarray:
    """A grey checkerboard (RGB), the editor's sign for transparency."""
    rows, cols = np.indices((height, width)) // square
    light = ((rows + cols) % 2 == 0)[..., None]
    return np.where(light, 204, 153).astype(np.uint8).repeat(3, axis=2)


def cutout_row(sequence: str, frames: int, work: Path) -> np.ndarray:
    """Source frame and its cutout over a checkerboard, side by side (BGR)."""
    clip = work / sequence
    clip.mkdir()
    for source in sorted((FRAMES / sequence).glob("*.jpg"))[:frames]:
        (clip / source.name).symlink_to(source)
    out = work / f"{sequence}-out"
    subprocess.run([sys.executable, "-m", "hmhi_cli", "segment", str(clip), "-o", str(out), "--save", "alpha", "-q"],
                   check=True)
    rgba = cv2.imread(str(sorted((out / "alpha").glob("*.png"))[-1]), cv2.IMREAD_UNCHANGED)
    alpha = rgba[..., 3:4].astype(np.float32) / 255
    board = checkerboard(*rgba.shape[:2])
    cutout = (rgba[..., :3] * alpha + board * (1 - alpha)).round().astype(np.uint8)
    source = cv2.imread(str(sorted(clip.glob("*.jpg"))[-1]))
    gap = np.full((source.shape[0], 8, 3), 255, np.uint8)
    return np.concatenate([source, gap, cutout], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "cutout-before-after.jpg")
    parser.add_argument("--sequences", default=",".join(SEQUENCES), help="davis16-train sequences, one row each")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--width", type=int, default=960, help="width of the picture in pixels")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        rows = [cutout_row(sequence, args.frames, Path(work)) for sequence in args.sequences.split(",")]
    gap = np.full((8, rows[0].shape[1], 3), 255, np.uint8)
    picture = np.concatenate([part for row in rows for part in (row, gap)][:-1], axis=0)
    height = round(picture.shape[0] * args.width / picture.shape[1])
    picture = cv2.resize(picture, (args.width, height), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(args.out), picture, [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"{args.out}: {args.width}x{height}, {args.out.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
