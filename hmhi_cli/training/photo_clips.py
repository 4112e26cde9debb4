"""Photos as training clips: the object of a labelled photo, cut out by its mask, moves over a
background (another photo, a video frame, or its own scene with the object painted out) while
the camera pans and zooms, so a still photo teaches both what an object is and how it moves.

Frames are synthesized at the canvas size and handed back like a real clip's frames; the
sampler then computes their flow exactly as inference does."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class PhotoClipConfig:
    """How photo clips look and move. Ranges are ``(low, high)``; lengths and speeds are
    fractions of the canvas's shorter side, speeds per frame."""

    long_side: int = 480
    """Canvas size: the background's aspect, this long."""
    object_size: tuple[float, float] = (0.12, 0.95)
    """The object's longer side (log-uniform), so small objects come up as often as large ones."""
    object_speed: tuple[float, float] = (0.005, 0.04)
    camera_speed: tuple[float, float] = (0.0, 0.025)
    camera_zoom: float = 0.015
    """Largest zoom of the camera per frame (in or out)."""
    object_rotation: float = 3.0
    """Largest rotation of the object per frame, in degrees."""
    object_scale_change: float = 0.02
    same_scene_probability: float = 0.3
    """Chance that the background is the photo itself with the object painted out, the object
    starting where it was."""
    margin: float = 0.15
    """How much larger than the canvas the background is, so the camera can move."""


def _similarity(angle_degrees: float, scale: float) -> np.ndarray:
    angle = math.radians(angle_degrees)
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float64)


def _translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], np.float64)


def _scaling(scale: float) -> np.ndarray:
    return np.diag([scale, scale, 1.0])


def _cover(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` scaled to cover (height, width) and centre-cropped to it."""
    scale = max(height / image.shape[0], width / image.shape[1])
    resized = cv2.resize(image, (max(width, round(image.shape[1] * scale)), max(height, round(image.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (resized.shape[0] - height) // 2, (resized.shape[1] - width) // 2
    return resized[top:top + height, left:left + width]


def paint_out(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` with the object (mask >= 0.5, grown a little) filled in from its surroundings."""
    height, width = image.shape[:2]
    hole = (mask >= 0.1).astype(np.uint8)
    hole = cv2.dilate(hole, np.ones((3, 3), np.uint8), iterations=max(2, round(0.01 * max(height, width))))
    scale = min(1.0, 160 / max(height, width))
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image, small_size, interpolation=cv2.INTER_AREA)
    small_hole = cv2.resize(hole, small_size, interpolation=cv2.INTER_NEAREST)
    filled = cv2.inpaint(small, small_hole, 3, cv2.INPAINT_TELEA)
    filled = cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR)
    keep = hole[..., None].astype(bool)
    return np.where(keep, filled, image)


def make_photo_clip(image: np.ndarray, mask: np.ndarray, background: np.ndarray, count: int,
                    config: PhotoClipConfig, rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``count`` RGB frames and 0/1 masks of the photo's object moving over ``background``
    (ignored for a same-scene clip). ``mask`` is float in [0, 1] at the image's size."""
    ys, xs = np.nonzero(mask >= 0.5)
    same_scene = rng.random() < config.same_scene_probability
    scene = image if same_scene else background
    aspect = scene.shape[1] / scene.shape[0]
    height, width = ((config.long_side, round(config.long_side * aspect)) if aspect < 1
                     else (round(config.long_side / aspect), config.long_side))
    short = min(height, width)
    margin_h, margin_w = round(height * config.margin), round(width * config.margin)
    if same_scene:
        world = paint_out(cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR),
                          cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR))
        world = cv2.copyMakeBorder(world, margin_h, margin_h, margin_w, margin_w, cv2.BORDER_REFLECT101)
        photo_to_scene = _scaling(width / image.shape[1])
    else:
        world = _cover(background, height + 2 * margin_h, width + 2 * margin_w)
        object_side = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        size = math.exp(rng.uniform(*np.log(config.object_size)))
        scale = size * short / object_side
        centre = np.array([rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height])
        photo_to_scene = (_translation(*centre) @ _scaling(scale)
                          @ _translation(-(xs.min() + xs.max()) / 2, -(ys.min() + ys.max()) / 2))
    world_to_scene = _translation(-margin_w, -margin_h)  # the scene: canvas coordinates at frame 0
    camera_direction = rng.uniform(0, 2 * math.pi)
    camera_speed = rng.uniform(*config.camera_speed) * short
    camera_zoom = rng.uniform(-config.camera_zoom, config.camera_zoom)
    object_direction = rng.uniform(0, 2 * math.pi)
    object_speed = rng.uniform(*config.object_speed) * short
    rotation = rng.uniform(-config.object_rotation, config.object_rotation)
    growth = rng.uniform(-config.object_scale_change, config.object_scale_change)
    object_pivot = photo_to_scene @ np.array([(xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2, 1.0])
    canvas_centre = np.array([width / 2, height / 2])
    alpha = mask.astype(np.float32)
    frames, masks = [], []
    for t in range(count):
        camera = (_translation(*canvas_centre) @ _scaling((1 + camera_zoom) ** t)
                  @ _translation(*(-canvas_centre - t * camera_speed * np.array([math.cos(camera_direction),
                                                                                  math.sin(camera_direction)]))))
        step = t * object_speed * np.array([math.cos(object_direction), math.sin(object_direction)])
        motion = (_translation(*(object_pivot[:2] + step)) @ _similarity(t * rotation, (1 + growth) ** t)
                  @ _translation(*-object_pivot[:2]))
        backdrop = cv2.warpAffine(world, (camera @ world_to_scene)[:2], (width, height), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT101)
        object_matrix = (camera @ motion @ photo_to_scene)[:2]
        layer = cv2.warpAffine(image, object_matrix, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT)
        cover = cv2.warpAffine(alpha, object_matrix, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT)[..., None]
        frames.append(np.clip(layer * cover + backdrop * (1 - cover) + 0.5, 0, 255).astype(np.uint8))
        masks.append((cover[..., 0] >= 0.5).astype(np.uint8))
    return frames, masks
