"""Pixel operations on frames: put the object on a new background, tint the mask over the source."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from hmhi_cli.errors import InputError

Color = tuple[int, int, int]

COLOR_NAMES: dict[str, Color] = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
}
"""Named background colours (RGB). ``green`` and ``blue`` are the pure keying colours."""

DEFAULT_OVERLAY_COLOR: Color = (255, 0, 80)


@dataclass
class Background:
    """A solid colour or an image (RGB), given to :func:`composite`."""

    color: Color | None = None
    image: np.ndarray | None = None
    _resized: np.ndarray | None = field(default=None, init=False, repr=False)

    def array(self, height: int, width: int) -> np.ndarray:
        """The background as an HxWx3 uint8 RGB array; an image is stretched to the frame size."""
        if self.image is None:
            return np.broadcast_to(np.asarray(self.color, dtype=np.uint8), (height, width, 3))
        if self._resized is None or self._resized.shape[:2] != (height, width):
            self._resized = cv2.resize(self.image, (width, height), interpolation=cv2.INTER_AREA)
        return self._resized


def parse_color(spec: str) -> Color | None:
    """Read ``green``, ``#00ff00``, ``00ff00``, ``#0f0`` or ``0,255,0`` as RGB; None if it is none of these."""
    text = spec.strip().lower()
    if text in COLOR_NAMES:
        return COLOR_NAMES[text]
    hex_match = re.fullmatch(r"#?([0-9a-f]{6}|[0-9a-f]{3})", text)
    if hex_match:
        digits = hex_match.group(1)
        if len(digits) == 3:
            digits = "".join(c * 2 for c in digits)
        return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)
    rgb_match = re.fullmatch(r"(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})", text)
    if rgb_match:
        values = tuple(int(v) for v in rgb_match.groups())
        if all(v <= 255 for v in values):
            return values
    return None


def parse_background(spec: str) -> Background:
    """Turn a user's ``--background`` value (colour or image path) into a :class:`Background`.

    Raises :class:`InputError` for anything that is neither a colour nor a readable image.
    """
    color = parse_color(spec)
    if color is not None:
        return Background(color=color)
    path = Path(spec)
    if path.is_file():
        bgr = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError(f"cannot read background image {path}")
        return Background(image=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    names = ", ".join(sorted(COLOR_NAMES))
    raise InputError(f"background {spec!r} is not an image file nor a colour ({names}, #rrggbb or r,g,b)")


def as_uint8_mask(mask: np.ndarray) -> np.ndarray:
    """A mask or matte as uint8 0..255: bool becomes 0/255, floats are read as 0..1, uint8 is kept."""
    if mask.dtype == np.uint8:
        return mask
    if mask.dtype == np.bool_:
        return mask.astype(np.uint8) * 255
    if np.issubdtype(mask.dtype, np.floating):
        return np.clip(np.rint(mask * 255.0), 0, 255).astype(np.uint8)
    raise ValueError(f"mask must be uint8, bool or float, got {mask.dtype}")


def composite(rgb: np.ndarray, alpha: np.ndarray, background: Background | str | Color) -> np.ndarray:
    """Blend the frame over ``background`` with ``alpha`` (HxW, 255 or 1.0 = object): returns HxWx3 uint8 RGB."""
    if isinstance(background, str):
        background = parse_background(background)
    elif not isinstance(background, Background):
        background = Background(color=tuple(background))
    height, width = rgb.shape[:2]
    weight = (as_uint8_mask(alpha).astype(np.float32) / 255.0)[..., None]
    back = background.array(height, width).astype(np.float32)
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
