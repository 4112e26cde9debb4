"""Synthetic video clips: textured objects moving over a textured, moving background.

Every clip has exact binary masks of its main object and the exact dense optical flow, so it can
pre-train HMHI-Net and test the pipeline without any dataset.

How a clip is built:

- The camera pans, zooms and rolls a little: the background (a texture in "world" coordinates)
  follows one global affine path, and so do the distractors, which are objects standing still
  in the world, some in front of the main object and some behind it.
- The main object moves in the world along its own smooth affine path (translation, rotation,
  scale); sometimes the camera tracks it. It may leave the frame partly, and distractors may
  hide part of it, but at least ``min_visible_fraction`` of it stays visible in every frame.
- Shapes are random smooth blobs (Fourier-perturbed ellipses), unions of ellipses ("body and
  limbs") or star-shaped polygons, drawn with anti-aliased edges; textures are fractal value
  noise, stripes, checkers, colour gradients, flat colours or crops of real photographs.
- Frames get soft shadows, shading, defocus blur, sensor noise and brightness/colour drift.

The mask of frame t is exactly the set of pixels where the main object is the top layer (alpha
>= 0.5). The flow of frame t maps each pixel to where its surface point is in frame t+1 (for the
last frame: in frame t-1), as ``(dx, dy)``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from hmhi_cli.data.shapes import SHAPE_KINDS, Shape, apply_affine, make_shape, rotation_scale, translation
from hmhi_cli.data.textures import TEXTURE_KINDS, coordinates, make_texture, shade
from hmhi_cli.errors import InputError, OutputError
from hmhi_cli.video import write_image

_MOTION_ATTEMPTS = 20
_TEXTURE_ATTEMPTS = 8
_NOISE_MARGIN = 32
_CLIP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _default_texture_kinds() -> dict[str, float]:
    return {"noise": 0.35, "stripes": 0.1, "checkers": 0.08, "gradient": 0.17, "flat": 0.05, "photo": 0.25}


def _default_shape_kinds() -> dict[str, float]:
    return {"blob": 0.5, "ellipses": 0.3, "polygon": 0.2}


@dataclass(frozen=True)
class SyntheticClipConfig:
    """How synthetic clips look and move. Ranges are ``(low, high)``, sampled uniformly per clip.

    Lengths and speeds are fractions of the frame's shorter side; speeds are per frame.
    """

    size: tuple[int, int] = (256, 256)
    """Frame size as (height, width)."""
    num_frames: int = 5
    num_distractors: tuple[int, int] = (0, 2)
    """How many objects besides the main one; they move with the background."""
    object_scale: tuple[float, float] = (0.15, 0.32)
    """Radius of the main object."""
    distractor_scale: tuple[float, float] = (0.06, 0.2)
    object_speed: tuple[float, float] = (0.01, 0.05)
    """Speed of the main object relative to the background."""
    background_speed: tuple[float, float] = (0.0, 0.03)
    """Camera pan speed (when it does not track the object)."""
    camera_tracking_probability: float = 0.25
    """Chance that the camera follows the main object, so the background streams past it."""
    object_rotation: float = 4.0
    """Largest rotation of the main object per frame, in degrees."""
    object_scale_change: float = 0.02
    """Largest relative change of the main object's size per frame."""
    background_zoom: float = 0.01
    """Largest relative camera zoom per frame."""
    background_rotation: float = 0.5
    """Largest camera roll per frame, in degrees."""
    shape_kinds: Mapping[str, float] = field(default_factory=_default_shape_kinds)
    """Relative weights of the shape kinds (see ``SHAPE_KINDS``)."""
    texture_kinds: Mapping[str, float] = field(default_factory=_default_texture_kinds)
    """Relative weights of the texture kinds (see ``TEXTURE_KINDS``); "photo" needs ``texture_images``."""
    texture_images: tuple[Path, ...] = ()
    """Photographs (e.g. DAVIS frames) whose random crops serve as textures."""
    min_contrast: float = 30.0
    """Smallest RGB distance between the mean colours of the main object and the background."""
    min_visible_fraction: float = 0.3
    """Smallest share of the main object that stays visible in every frame."""
    shading: float = 0.35
    """Largest strength of the lighting gradient and darker rim on objects."""
    shadow_probability: float = 0.3
    blur_probability: float = 0.3
    max_blur_sigma: float = 1.2
    """Largest defocus blur, in pixels."""
    noise_std: tuple[float, float] = (0.0, 3.0)
    """Sensor noise standard deviation, in 0..255 units."""
    photometric_jitter: float = 0.06
    """Largest colour cast and brightness drift over the clip, as a relative gain."""
    seed: int = 0
    """Default seed of :func:`iter_clips`."""

    def __post_init__(self) -> None:
        images = tuple(Path(path) for path in self.texture_images)
        object.__setattr__(self, "texture_images", images)
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))
        object.__setattr__(self, "shape_kinds", dict(self.shape_kinds))
        object.__setattr__(self, "texture_kinds", dict(self.texture_kinds))
        height, width = self.size
        if height < 16 or width < 16:
            raise InputError(f"synthetic clip size must be at least 16x16, got {height}x{width}")
        if self.num_frames < 2:
            raise InputError(f"synthetic clips need at least 2 frames, got {self.num_frames}")
        low, high = self.num_distractors
        if not 0 <= low <= high:
            raise InputError(f"num_distractors must be a range 0 <= low <= high, got {self.num_distractors}")
        for name in ("object_scale", "distractor_scale"):
            _check_range(name, getattr(self, name), 0.0, 2.0, strict_low=True)
        for name in ("object_speed", "background_speed", "noise_std"):
            _check_range(name, getattr(self, name), 0.0, math.inf)
        for name in ("camera_tracking_probability", "shadow_probability", "blur_probability",
                     "min_visible_fraction", "shading", "photometric_jitter", "object_scale_change",
                     "background_zoom"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InputError(f"{name} must be between 0 and 1, got {value}")
        for name in ("object_rotation", "background_rotation", "max_blur_sigma", "min_contrast"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must not be negative, got {getattr(self, name)}")
        _check_weights("shape_kinds", self.shape_kinds, SHAPE_KINDS)
        _check_weights("texture_kinds", self.texture_kinds, TEXTURE_KINDS)
        if not self.usable_texture_kinds():
            raise InputError("texture_kinds gives no weight to a usable texture kind ('photo' needs texture_images)")
        for path in images:
            if not path.is_file():
                raise InputError(f"texture image not found: {path}")

    def usable_texture_kinds(self) -> dict[str, float]:
        """Texture kinds with positive weight that can be made (photos only when images are given)."""
        return {
            kind: weight
            for kind, weight in self.texture_kinds.items()
            if weight > 0 and (kind != "photo" or self.texture_images)
        }


@dataclass(frozen=True)
class SyntheticClip:
    """One synthetic clip with exact ground truth."""

    frames: np.ndarray
    """(T, H, W, 3) uint8 RGB."""
    masks: np.ndarray
    """(T, H, W) uint8, 1 where the main object is visible."""
    flow: np.ndarray
    """(T, H, W, 2) float32 (dx, dy): frame t to t+1, and for the last frame to t-1."""


def make_clip(config: SyntheticClipConfig, rng: np.random.Generator) -> SyntheticClip:
    """Make one clip; the same config and generator state give the same clip."""
    return _ClipBuilder(config, rng).build()


def iter_clips(config: SyntheticClipConfig, seed: int | None = None, start: int = 0) -> Iterator[SyntheticClip]:
    """Endless clips; clip ``i`` depends only on ``(seed, i)``, so a run can resume at ``start``."""
    base = config.seed if seed is None else seed
    index = start
    while True:
        yield make_clip(config, np.random.default_rng([base, index]))
        index += 1


def write_clip(clip: SyntheticClip, folder: str | os.PathLike, name: str = "synthetic") -> Path:
    """Write ``clip`` in DAVIS layout under ``folder``; return the sequence's image folder.

    Frames go to ``JPEGImages/480p/<name>/00000.jpg``, masks (0/255) to
    ``Annotations/480p/<name>/00000.png``; each file is written atomically.
    """
    if not _CLIP_NAME.match(name):
        raise OutputError(f"invalid clip name {name!r}: use letters, digits, '.', '_' or '-'")
    root = Path(folder)
    image_dir = root / "JPEGImages" / "480p" / name
    mask_dir = root / "Annotations" / "480p" / name
    for index, (frame, mask) in enumerate(zip(clip.frames, clip.masks)):
        write_image(image_dir / f"{index:05d}.jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        write_image(mask_dir / f"{index:05d}.png", mask * np.uint8(255))
    return image_dir


def _check_range(name: str, value: tuple[float, float], low: float, high: float, strict_low: bool = False) -> None:
    a, b = value
    if not (low <= a <= b <= high) or (strict_low and a <= low):
        raise InputError(f"{name} must be a range low <= high within [{low}, {high}], got {value}")


def _check_weights(name: str, weights: Mapping[str, float], known: tuple[str, ...]) -> None:
    unknown = sorted(set(weights) - set(known))
    if unknown:
        raise InputError(f"{name} has unknown kind(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if any(weight < 0 for weight in weights.values()) or sum(weights.values()) <= 0:
        raise InputError(f"{name} weights must be non-negative with a positive sum, got {dict(weights)}")


@dataclass
class _Warped:
    """A layer's alpha warped into a frame region ``rows`` x ``cols``."""

    rows: slice
    cols: slice
    alpha: np.ndarray

    @property
    def hard(self) -> np.ndarray:
        return self.alpha >= 0.5


def _frame_region(matrix: np.ndarray, height: int, width: int, frame: tuple[int, int]) -> tuple[slice, slice] | None:
    corners = np.array([[0.0, 0.0], [width - 1.0, 0.0], [0.0, height - 1.0], [width - 1.0, height - 1.0]])
    mapped = apply_affine(matrix, corners)
    x0, y0 = np.floor(mapped.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(mapped.max(axis=0)).astype(int) + 2
    x0, x1 = max(x0, 0), min(x1, frame[1])
    y0, y1 = max(y0, 0), min(y1, frame[0])
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(int(y0), int(y1)), slice(int(x0), int(x1))


def _warp_into(image: np.ndarray, matrix: np.ndarray, rows: slice, cols: slice, border: int) -> np.ndarray:
    local = translation(-cols.start, -rows.start) @ matrix
    size = (cols.stop - cols.start, rows.stop - rows.start)
    return cv2.warpAffine(image, local[:2], size, flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0)


@dataclass(eq=False)
class _Layer:
    """A shape with a texture, placed in frame t by ``transforms[t]`` (canvas to frame pixels)."""

    shape: Shape
    transforms: np.ndarray
    frame_size: tuple[int, int]
    texture: np.ndarray | None = None
    _warped: dict[int, _Warped | None] = field(default_factory=dict)

    def warped(self, t: int) -> _Warped | None:
        if t not in self._warped:
            region = _frame_region(self.transforms[t], *self.shape.alpha.shape, self.frame_size)
            if region is None:
                self._warped[t] = None
            else:
                alpha = _warp_into(self.shape.alpha, self.transforms[t], *region, cv2.BORDER_CONSTANT)
                self._warped[t] = _Warped(region[0], region[1], alpha)
        return self._warped[t]

    def visible_area(self, t: int) -> int:
        warped = self.warped(t)
        return 0 if warped is None else int(np.count_nonzero(warped.hard))


def _affine_flow(forward: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Displacement of pixels (xs, ys) under the 3x3 affine ``forward``."""
    forward = forward.astype(np.float32)
    dx = (forward[0, 0] - 1.0) * xs + forward[0, 1] * ys + forward[0, 2]
    dy = forward[1, 0] * xs + (forward[1, 1] - 1.0) * ys + forward[1, 2]
    return dx, dy


def _flow_partner(t: int, count: int) -> int:
    return t + 1 if t + 1 < count else t - 1


class _ClipBuilder:
    """Samples one clip's scene and motion from ``rng``, then renders it."""

    def __init__(self, config: SyntheticClipConfig, rng: np.random.Generator) -> None:
        self.config = config
        self.rng = rng
        self.height, self.width = config.size
        self.count = config.num_frames
        self.unit = float(min(config.size))
        self.centre = np.array([(self.width - 1) / 2.0, (self.height - 1) / 2.0])
        self.times = np.arange(self.count, dtype=np.float64)

    def _uniform(self, bounds: tuple[float, float]) -> float:
        return float(self.rng.uniform(bounds[0], bounds[1]))

    def _direction(self) -> np.ndarray:
        angle = self.rng.uniform(0, 2 * math.pi)
        return np.array([math.cos(angle), math.sin(angle)])

    def _choice(self, weights: Mapping[str, float]) -> str:
        kinds = [kind for kind, weight in weights.items() if weight > 0]
        probabilities = np.array([weights[kind] for kind in kinds], dtype=np.float64)
        return kinds[int(self.rng.choice(len(kinds), p=probabilities / probabilities.sum()))]

    def _camera(self, track: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        """World-to-frame affines (T, 3, 3); the world equals the frame at t = 0.

        ``track`` is the (velocity, acceleration) of an object to follow, or None for a free pan.
        """
        config = self.config
        if track is None:
            velocity = self._direction() * self._uniform(config.background_speed) * self.unit
            acceleration = self.rng.normal(0.0, 0.1, 2) * np.linalg.norm(velocity)
        else:
            velocity = track[0] + self.rng.normal(0.0, 0.1, 2)
            acceleration = track[1]
        zoom = self.rng.uniform(-config.background_zoom, config.background_zoom)
        roll = math.radians(self.rng.uniform(-config.background_rotation, config.background_rotation))
        to_centre = translation(*self.centre)
        matrices = []
        for t in self.times:
            pan = velocity * t + 0.5 * acceleration * t * t
            view = rotation_scale(roll * t, (1.0 + zoom) ** t)
            matrices.append(to_centre @ view @ translation(*(-self.centre - pan)))
        return np.stack(matrices)

    def _object_path(self, velocity: np.ndarray, acceleration: np.ndarray) -> np.ndarray:
        """Object-local-to-world affines (T, 3, 3), starting at the world origin."""
        config = self.config
        spin = math.radians(self.rng.uniform(-config.object_rotation, config.object_rotation))
        growth = self.rng.uniform(-config.object_scale_change, config.object_scale_change)
        angle = self.rng.uniform(-0.3, 0.3)
        matrices = []
        for t in self.times:
            position = velocity * t + 0.5 * acceleration * t * t
            matrices.append(translation(*position) @ rotation_scale(angle + spin * t, (1.0 + growth) ** t))
        return np.stack(matrices)

    def _place_object(self, shape: Shape) -> tuple[_Layer, np.ndarray]:
        """Sample object and camera motion until enough of the object stays in view every frame."""
        config = self.config
        full_area = shape.hard_area()
        for attempt in range(_MOTION_ATTEMPTS + 1):
            fallback = attempt == _MOTION_ATTEMPTS
            velocity = self._direction() * self._uniform(config.object_speed) * self.unit
            acceleration = self.rng.normal(0.0, 0.1, 2) * np.linalg.norm(velocity)
            tracking = fallback or self.rng.random() < config.camera_tracking_probability
            camera = self._camera((velocity, acceleration) if tracking else None)
            path = self._object_path(velocity, acceleration)
            centres = np.stack([apply_affine(camera[t] @ path[t], np.zeros((1, 2)))[0] for t in range(self.count)])
            middle = (centres.min(axis=0) + centres.max(axis=0)) / 2.0
            spread = np.zeros(2) if fallback else self.rng.uniform(-0.3, 0.3, 2) * (self.width, self.height)
            shift = self.centre + spread - middle
            path[:, :2, 2] += shift
            layer = _Layer(shape, camera @ path @ shape.to_local, config.size)
            scales = np.abs(np.linalg.det(layer.transforms[:, :2, :2]))
            needed = config.min_visible_fraction * full_area * scales
            if fallback or all(layer.visible_area(t) >= max(needed[t], 1) for t in range(self.count)):
                return layer, camera
        raise AssertionError("unreachable: the last attempt is always accepted")

    def _place_distractor(self, shape: Shape, camera: np.ndarray, main: _Layer) -> _Layer:
        """A distractor fixed in the world, often near the main object's path so that it may occlude it."""
        if self.rng.random() < 0.35:
            t = int(self.rng.integers(self.count))
            frame_point = apply_affine(main.transforms[t], main.shape.origin[None])[0]
            world_point = apply_affine(np.linalg.inv(camera[t]), frame_point[None])[0]
            position = world_point + self.rng.normal(0.0, main.shape.radius, 2)
        else:
            position = self.rng.uniform(0, 1, 2) * (self.width, self.height)
        placement = translation(*position) @ rotation_scale(self.rng.uniform(0, 2 * math.pi), 1.0)
        return _Layer(shape, camera @ placement @ shape.to_local, self.config.size)

    def _order_layers(self, main: _Layer, distractors: list[_Layer]) -> list[_Layer]:
        """Back-to-front layers; a distractor goes behind the object if in front it would hide too much."""
        config = self.config
        scales = np.abs(np.linalg.det(main.transforms[:, :2, :2]))
        needed = np.maximum(config.min_visible_fraction * main.shape.hard_area() * scales, 1)
        visible = [np.zeros((self.height, self.width), bool) for _ in range(self.count)]
        for t in range(self.count):
            warped = main.warped(t)
            if warped is not None:
                visible[t][warped.rows, warped.cols] = warped.hard
        behind, front = [], []
        for layer in distractors:
            if self.rng.random() >= 0.4:
                behind.append(layer)
                continue
            hidden = [visible[t].copy() for t in range(self.count)]
            for t in range(self.count):
                warped = layer.warped(t)
                if warped is not None:
                    hidden[t][warped.rows, warped.cols] &= ~warped.hard
            if all(np.count_nonzero(hidden[t]) >= needed[t] for t in range(self.count)):
                front.append(layer)
                visible = hidden
            else:
                behind.append(layer)
        return [*behind, main, *front]

    def _object_texture(self, shape: Shape, background_mean: np.ndarray | None) -> np.ndarray:
        """A shaded texture for ``shape``; given the background's mean colour, retry to stand out from it."""
        config = self.config
        height, width = shape.alpha.shape
        weights = shape.alpha[..., None] / max(float(shape.alpha.sum()), 1e-6)
        texture = None
        for _ in range(_TEXTURE_ATTEMPTS):
            texture = make_texture(self._choice(config.usable_texture_kinds()), height, width, self.rng,
                                   float(min(config.size)), config.texture_images)
            if background_mean is None:
                break
            mean = (texture * weights).sum(axis=(0, 1))
            if np.linalg.norm(mean - background_mean) >= config.min_contrast:
                break
        return shade(texture, shape, self._uniform((0.0, config.shading)), self.rng)

    def _background(self, camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The background texture and its canvas-to-frame affines, covering every frame's view."""
        frame_corners = np.array([[0.0, 0.0], [self.width - 1.0, 0.0], [0.0, self.height - 1.0],
                                  [self.width - 1.0, self.height - 1.0]])
        seen = np.concatenate([apply_affine(np.linalg.inv(matrix), frame_corners) for matrix in camera])
        low = np.floor(seen.min(axis=0)) - 2
        width, height = (np.ceil(seen.max(axis=0)).astype(int) + 3 - low.astype(int)).tolist()
        texture = make_texture(self._choice(self.config.usable_texture_kinds()), height, width, self.rng,
                               float(min(self.config.size)), self.config.texture_images)
        return texture, camera @ translation(*low)

    def build(self) -> SyntheticClip:
        config = self.config
        radius = self._uniform(config.object_scale) * self.unit
        main_shape = make_shape(self._choice(config.shape_kinds), radius, self.rng)
        main, camera = self._place_object(main_shape)
        distractors = []
        for _ in range(int(self.rng.integers(config.num_distractors[0], config.num_distractors[1] + 1))):
            radius = self._uniform(config.distractor_scale) * self.unit
            shape = make_shape(self._choice(config.shape_kinds), radius, self.rng)
            distractors.append(self._place_distractor(shape, camera, main))
        layers = self._order_layers(main, distractors)

        background, background_transforms = self._background(camera)
        background_mean = background.reshape(-1, 3).mean(axis=0)
        for layer in layers:
            layer.texture = self._object_texture(layer.shape, background_mean if layer is main else None)
        shadows = self._shadows(layers)

        frames = np.empty((self.count, self.height, self.width, 3), np.uint8)
        masks = np.empty((self.count, self.height, self.width), np.uint8)
        flow = np.empty((self.count, self.height, self.width, 2), np.float32)
        photometric = self._photometric_settings()
        main_index = next(index for index, layer in enumerate(layers) if layer is main)
        for t in range(self.count):
            image = cv2.warpAffine(background, background_transforms[t, :2], (self.width, self.height),
                                   flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101).astype(np.float32)
            if shadows is not None:
                self._cast_shadows(image, shadows, t)
            owner = np.full((self.height, self.width), -1, np.int16)
            partner = _flow_partner(t, self.count)
            xs, ys = coordinates(self.height, self.width)
            dx, dy = _affine_flow(background_transforms[partner] @ np.linalg.inv(background_transforms[t]), xs, ys)
            flow[t, ..., 0], flow[t, ..., 1] = dx, dy
            for index, layer in enumerate(layers):
                warped = layer.warped(t)
                if warped is None:
                    continue
                texture = _warp_into(layer.texture, layer.transforms[t], warped.rows, warped.cols, cv2.BORDER_REPLICATE)
                region = image[warped.rows, warped.cols]
                region += warped.alpha[..., None] * (texture.astype(np.float32) - region)
                hard = warped.hard
                owner[warped.rows, warped.cols][hard] = index
                forward = layer.transforms[partner] @ np.linalg.inv(layer.transforms[t])
                dx, dy = _affine_flow(forward, xs[:, warped.cols], ys[warped.rows])
                flow[t, warped.rows, warped.cols, 0][hard] = dx[hard]
                flow[t, warped.rows, warped.cols, 1][hard] = dy[hard]
            masks[t] = owner == main_index
            frames[t] = self._finish(image, t, photometric)
        return SyntheticClip(frames=frames, masks=masks, flow=flow)

    def _shadows(self, layers: list[_Layer]) -> list[tuple[_Layer, np.ndarray, np.ndarray]] | None:
        """Per layer: its blurred silhouette, and the matrices (undo the padding, shift along the light).

        The shadows of all layers fall on the background, offset along one light direction.
        """
        if self.rng.random() >= self.config.shadow_probability:
            return None
        offset = self._direction() * self.rng.uniform(0.02, 0.08) * self.unit
        strength = self.rng.uniform(0.2, 0.5)
        shadows = []
        for layer in layers:
            sigma = max(layer.shape.radius * 0.12, 1.0)
            pad = int(math.ceil(3 * sigma)) + 1
            padded = cv2.copyMakeBorder(layer.shape.alpha, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
            silhouette = cv2.GaussianBlur(padded, (0, 0), sigma) * np.float32(strength)
            shadows.append((layer, silhouette, np.stack([translation(-pad, -pad), translation(*offset)])))
        return shadows

    def _cast_shadows(self, image: np.ndarray, shadows: list[tuple[_Layer, np.ndarray, np.ndarray]], t: int) -> None:
        """Darken the background under each layer's blurred, offset silhouette in frame t."""
        for layer, silhouette, (unpad, offset) in shadows:
            matrix = offset @ layer.transforms[t] @ unpad
            region = _frame_region(matrix, *silhouette.shape, (self.height, self.width))
            if region is not None:
                darkness = _warp_into(silhouette, matrix, *region, cv2.BORDER_CONSTANT)
                image[region] *= (1.0 - darkness)[..., None]

    def _photometric_settings(self) -> tuple[np.ndarray, float, np.ndarray | None]:
        """Per-frame RGB gains (colour cast times brightness drift), defocus sigma, sensor noise field.

        The noise field is drawn once per clip, one channel a little larger than a frame; each
        channel of each frame takes a window at a random offset, much cheaper than fresh noise.
        """
        config = self.config
        jitter = config.photometric_jitter
        cast = 1.0 + self.rng.uniform(-jitter, jitter, 3)
        drift = self.rng.uniform(-jitter, jitter) * self.times / max(self.count - 1, 1)
        gains = (1.0 + drift + self.rng.normal(0.0, jitter * 0.1, self.count))[:, None] * cast[None, :]
        blurred = self.rng.random() < config.blur_probability
        blur = self.rng.uniform(0.3, max(config.max_blur_sigma, 0.3)) if blurred else 0.0
        level = self._uniform(config.noise_std)
        noise = None
        if level > 0:
            shape = (self.height + _NOISE_MARGIN, self.width + _NOISE_MARGIN)
            noise = self.rng.standard_normal(shape, dtype=np.float32) * np.float32(level)
        return gains.astype(np.float32), blur, noise

    def _finish(self, image: np.ndarray, t: int, photometric: tuple[np.ndarray, float, np.ndarray | None]
                ) -> np.ndarray:
        """Apply colour cast, brightness drift, defocus blur and sensor noise; quantise to uint8."""
        gains, blur, noise = photometric
        image *= gains[t]
        if blur > 0:
            image = cv2.GaussianBlur(image, (0, 0), blur)
        if noise is not None:
            for channel, (top, left) in enumerate(self.rng.integers(0, _NOISE_MARGIN + 1, (3, 2))):
                image[..., channel] += noise[top : top + self.height, left : left + self.width]
        image += 0.5
        return np.clip(image, 0, 255, out=image).astype(np.uint8)
