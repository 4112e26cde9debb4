"""Pixel operations on frames: put the object on a new background, tint the mask over the source."""

from __future__ import annotations

import cv2
import numpy as np

from hmhi_cli.video.background import Background, Color, parse_background

DEFAULT_OVERLAY_COLOR: Color = (255, 0, 80)


def as_uint8_mask(mask: np.ndarray) -> np.ndarray:
    """A mask or matte as uint8 0..255: bool becomes 0/255, floats are read as 0..1, uint8 is kept."""
    if mask.dtype == np.uint8:
        return mask
    if mask.dtype == np.bool_:
        return mask.astype(np.uint8) * 255
    if np.issubdtype(mask.dtype, np.floating):
        return np.clip(np.rint(mask * 255.0), 0, 255).astype(np.uint8)
    raise ValueError(f"mask must be uint8, bool or float, got {mask.dtype}")


def composite(rgb: np.ndarray, alpha: np.ndarray, background: np.ndarray | Background | str | Color) -> np.ndarray:
    """Blend the frame over ``background`` with ``alpha`` (HxW, 255 or 1.0 = object): returns HxWx3
    uint8 RGB. ``background`` is a backdrop (HxWx3 uint8 RGB), a colour or image :class:`Background`,
    a ``--background`` value or an RGB colour."""
    height, width = rgb.shape[:2]
    if isinstance(background, str):
        background = parse_background(background)
    if isinstance(background, Background):
        background = background.array(height, width)
    elif not isinstance(background, np.ndarray):
        background = Background(color=tuple(background)).array(height, width)
    weight = (as_uint8_mask(alpha).astype(np.float32) / 255.0)[..., None]
    back = background.astype(np.float32)
    blended = back + (rgb.astype(np.float32) - back) * weight
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def contour_thickness(height: int, width: int) -> int:
    """Outline width for :func:`overlay`: 2 px at 480p, growing with the frame."""
    return max(1, round(min(height, width) / 240))


def overlay(
    rgb: np.ndarray,
    mask: np.ndarray,
    color: Color = DEFAULT_OVERLAY_COLOR,
    opacity: float = 0.5,
) -> np.ndarray:
    """The frame with the mask (HxW, 255 or 1.0 = object) tinted over it (``opacity`` at full mask)
    and the mask's outline (mask >= 128) drawn in ``color``: returns HxWx3 uint8 RGB."""
    mask = as_uint8_mask(mask)
    weight = (mask.astype(np.float32) * (opacity / 255.0))[..., None]
    tint = np.asarray(color, dtype=np.float32)
    tinted = rgb.astype(np.float32) + (tint - rgb.astype(np.float32)) * weight
    out = np.clip(np.rint(tinted), 0, 255).astype(np.uint8)
    contours, _ = cv2.findContours((mask >= 128).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, tuple(int(c) for c in color), contour_thickness(*mask.shape[:2]), cv2.LINE_8)
    return out
