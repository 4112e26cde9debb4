"""Scale-robust views of a clip: one random resized crop, zoom-out with padding, or aspect
jitter, applied alike to a clip's frames, their flow neighbours and masks, so the flow is then
computed on the viewed frames exactly as inference computes it on a whole frame."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class ViewConfig:
    """How often and how far a clip is re-framed. Fractions are of the frame's width and height."""

    probability: float = 0.0
    """Chance that a clip gets a random view at all (0: every clip is the whole frame)."""
    zoom_out_probability: float = 0.3
    """Of the viewed clips, the share shrunk into a padded canvas (small objects on purpose)."""
    crop_side: tuple[float, float] = (0.4, 1.0)
    """Side of a zoom-in crop, as a fraction of the frame's sides."""
    zoom_out_scale: tuple[float, float] = (0.35, 0.9)
    """Scale of the frame inside the canvas when zooming out."""
    aspect: tuple[float, float] = (0.75, 4 / 3)
    """Aspect jitter: the view's width/height stretch, log-uniform in this range."""
    keep_object_probability: float = 0.9
    """Chance that a zoom-in crop is placed to contain the object's centre (when there is one)."""


def random_view(config: ViewConfig, height: int, width: int, mask: np.ndarray | None,
                rng: np.random.Generator) -> np.ndarray | None:
    """A 2x3 affine matrix mapping the frame onto a canvas of the same size, or None (identity)."""
    if config.probability <= 0 or rng.random() >= config.probability:
        return None
    stretch = math.exp(rng.uniform(math.log(config.aspect[0]), math.log(config.aspect[1])))
    if rng.random() < config.zoom_out_probability:
        scale = rng.uniform(*config.zoom_out_scale)
        scale_x, scale_y = min(1.0, scale * math.sqrt(stretch)), min(1.0, scale / math.sqrt(stretch))
        offset_x = rng.uniform(0, width * (1 - scale_x))
        offset_y = rng.uniform(0, height * (1 - scale_y))
        return np.array([[scale_x, 0, offset_x], [0, scale_y, offset_y]], np.float64)
    side = rng.uniform(*config.crop_side)
    crop_w = min(float(width), side * width * math.sqrt(stretch))
    crop_h = min(float(height), side * height / math.sqrt(stretch))
    left, top = _crop_origin(config, height, width, crop_h, crop_w, mask, rng)
    scale_x, scale_y = width / crop_w, height / crop_h
    return np.array([[scale_x, 0, -left * scale_x], [0, scale_y, -top * scale_y]], np.float64)


def _crop_origin(config: ViewConfig, height: int, width: int, crop_h: float, crop_w: float,
                 mask: np.ndarray | None, rng: np.random.Generator) -> tuple[float, float]:
    max_left, max_top = width - crop_w, height - crop_h
    ys, xs = np.nonzero(mask) if mask is not None else (np.empty(0), np.empty(0))
    if xs.size and rng.random() < config.keep_object_probability:
        centre_x, centre_y = float(xs.mean()), float(ys.mean())
        low_x, high_x = max(0.0, centre_x - crop_w * 0.9), min(max_left, centre_x - crop_w * 0.1)
        low_y, high_y = max(0.0, centre_y - crop_h * 0.9), min(max_top, centre_y - crop_h * 0.1)
        if low_x <= high_x and low_y <= high_y:
            return rng.uniform(low_x, high_x), rng.uniform(low_y, high_y)
    return rng.uniform(0, max(max_left, 0.0)), rng.uniform(0, max(max_top, 0.0))


def apply_view(matrix: np.ndarray | None, frames: list[np.ndarray], neighbours: list[np.ndarray],
               masks: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Warp frames and neighbours (bilinear, padding in the clip's mean colour) and masks
    (nearest, padding 0) by one view; None leaves the clip as it is."""
    if matrix is None:
        return frames, neighbours, masks
    height, width = frames[0].shape[:2]
    fill = tuple(float(v) for v in frames[0].reshape(-1, 3).mean(0))

    def warp_image(image: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=fill)

    def warp_mask(mask: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(mask, matrix, (width, height), flags=cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    return [warp_image(f) for f in frames], [warp_image(f) for f in neighbours], [warp_mask(m) for m in masks]
