"""Textures of the synthetic clips (:mod:`hmhi_cli.data.synthetic`): fractal value noise,
stripes, checkers, colour gradients, flat colours and crops of photographs, and the shading
that lights an object's texture."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import cv2
import numpy as np

from hmhi_cli.data.shapes import Shape
from hmhi_cli.errors import InputError

TEXTURE_KINDS = ("noise", "stripes", "checkers", "gradient", "flat", "photo")


def random_colours(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` RGB colours in 0..255 (float32), often from one hue family, mostly unsaturated."""
    if rng.random() < 0.6:
        hue = (rng.uniform(0, 180) + rng.normal(0.0, 20.0, count)) % 180
    else:
        hue = rng.uniform(0, 180, count)
    saturation = 255 * rng.beta(1.3, 2.0, count)
    value = 255 * rng.uniform(0.12, 1.0, count)
    hsv = np.stack([hue, saturation, value], axis=1).round().astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0].astype(np.float32)


def ramp(values: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] (H, W) to colours along a piecewise linear ramp: (H, W, 3) uint8."""
    levels = np.linspace(0.0, len(colours) - 1.0, 256)
    index = np.minimum(levels.astype(np.int64), len(colours) - 2)
    fraction = (levels - index)[:, None]
    table = colours[index] * (1.0 - fraction) + colours[index + 1] * fraction
    table = np.clip(table + 0.5, 0, 255).astype(np.uint8).reshape(1, 256, 3)
    steps = np.clip(values * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(cv2.merge([steps, steps, steps]), table)


def fractal_noise(height: int, width: int, rng: np.random.Generator, cell: float, octaves: int) -> np.ndarray:
    """Multi-octave value noise in [0, 1], smooth at the scale of ``cell`` pixels."""
    total = np.zeros((height, width), np.float32)
    amplitude = 1.0
    for _ in range(octaves):
        grid = rng.random((int(height / cell) + 2, int(width / cell) + 2), dtype=np.float32)
        total += amplitude * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        amplitude *= 0.5
        cell = max(cell / 2.0, 1.5)
    low, high = float(total.min()), float(total.max())
    return (total - low) / max(high - low, 1e-6)


def coordinates(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(width, dtype=np.float32)[None, :], np.arange(height, dtype=np.float32)[:, None]


def make_texture(kind: str, height: int, width: int, rng: np.random.Generator, scale: float,
            photos: tuple[Path, ...] = ()) -> np.ndarray:
    """A (height, width, 3) uint8 RGB texture of the given kind; ``scale`` (pixels, the clip's
    smaller side) sets the size of its features, and "photo" crops one of ``photos``."""
    if kind == "photo":
        return photo_crop(photos[int(rng.integers(len(photos)))], height, width, rng)
    xs, ys = coordinates(height, width)
    if kind == "flat":
        image = np.broadcast_to(random_colours(rng, 1)[0], (height, width, 3))
    elif kind == "noise":
        values = fractal_noise(height, width, rng, scale * rng.uniform(0.05, 0.5), int(rng.integers(3, 6)))
        if rng.random() < 0.3:
            values = np.abs(2.0 * values - 1.0)
        image = ramp(values, random_colours(rng, int(rng.integers(2, 5))))
        shade = fractal_noise(height, width, rng, scale * rng.uniform(0.02, 0.1), 3)
        image = image * (0.8 + 0.4 * shade)[..., None]
    elif kind in ("stripes", "checkers"):
        period = scale * rng.uniform(0.03, 0.2)
        angle = rng.uniform(0, math.pi)
        u = (xs * math.cos(angle) + ys * math.sin(angle)) / period
        v = (ys * math.cos(angle) - xs * math.sin(angle)) / period
        warp = rng.uniform(0.0, 1.5) * (fractal_noise(height, width, rng, scale * 0.3, 2) - 0.5)
        if kind == "stripes":
            wave = np.sin(2.0 * math.pi * (u + warp))
        else:
            wave = np.sin(math.pi * (u + warp)) * np.sin(math.pi * (v + warp))
        values = np.clip(0.5 + 0.5 * rng.uniform(1.0, 8.0) * wave, 0.0, 1.0)
        image = ramp(values, random_colours(rng, 2))
        grain = fractal_noise(height, width, rng, scale * 0.05, 2)
        image = image * (0.9 + 0.2 * grain)[..., None]
    else:
        if rng.random() < 0.5:
            angle = rng.uniform(0, 2 * math.pi)
            values = xs * math.cos(angle) + ys * math.sin(angle)
        else:
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            values = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
        values = values - values.min()
        values = values / max(float(values.max()), 1e-6)
        image = ramp(values, random_colours(rng, int(rng.integers(2, 4))))
        grain = fractal_noise(height, width, rng, scale * 0.1, 3)
        image = image * (0.92 + 0.16 * grain)[..., None]
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=32)
def load_photo(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"cannot read texture image: {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def photo_crop(path: Path, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of a photograph, zoomed by a random factor, resized to (height, width)."""
    photo = load_photo(path)
    photo_height, photo_width = photo.shape[:2]
    zoom = max(rng.uniform(0.6, 1.4), height / photo_height, width / photo_width)
    crop_height = min(photo_height, max(1, round(height / zoom)))
    crop_width = min(photo_width, max(1, round(width / zoom)))
    top = int(rng.integers(photo_height - crop_height + 1))
    left = int(rng.integers(photo_width - crop_width + 1))
    crop = photo[top : top + crop_height, left : left + crop_width]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    shrinking = crop_height > height
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def shade(texture: np.ndarray, shape: Shape, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Light an object's texture: a linear lighting gradient and a darker rim."""
    if strength <= 0:
        return texture
    height, width = shape.alpha.shape
    xs, ys = coordinates(height, width)
    angle = rng.uniform(0, 2 * math.pi)
    gradient = ((xs - shape.origin[0]) * math.cos(angle) + (ys - shape.origin[1]) * math.sin(angle)) / shape.radius
    light = 1.0 + rng.uniform(0, strength) * np.clip(gradient, -1.0, 1.0)
    inner = cv2.GaussianBlur(shape.alpha, (0, 0), max(shape.radius * 0.15, 0.5))
    light = light * (1.0 - rng.uniform(0, strength) * (1.0 - np.clip(2.0 * inner - 0.5, 0.0, 1.0)))
    return np.clip(texture * light[..., None] + 0.5, 0, 255).astype(np.uint8)
