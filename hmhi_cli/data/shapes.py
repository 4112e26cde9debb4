"""Shapes of the synthetic clips (:mod:`hmhi_cli.data.synthetic`): smooth blobs, unions of
ellipses ("body and limbs") and star-shaped polygons, anti-aliased on their own canvas, and the
3x3 affine matrices that place them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

SHAPE_KINDS = ("blob", "ellipses", "polygon")


def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def rotation_scale(angle: float, scale: float) -> np.ndarray:
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def ellipse_points(a: float, b: float, angle: float, centre: np.ndarray, count: int = 48) -> np.ndarray:
    theta = np.linspace(0.0, 2.0 * math.pi, count, endpoint=False)
    local = np.stack([a * np.cos(theta), b * np.sin(theta)], axis=1)
    return apply_affine(rotation_scale(angle, 1.0), local) + centre


@dataclass
class Shape:
    """An anti-aliased shape on its own canvas; ``origin`` is its centre in canvas pixels."""

    alpha: np.ndarray
    origin: np.ndarray
    radius: float

    @property
    def to_local(self) -> np.ndarray:
        return translation(-self.origin[0], -self.origin[1])

    def hard_area(self) -> int:
        return int(np.count_nonzero(self.alpha >= 0.5))


def make_shape(kind: str, radius: float, rng: np.random.Generator) -> Shape:
    if kind == "blob":
        theta = np.linspace(0.0, 2.0 * math.pi, 96, endpoint=False)
        orders = np.arange(2, 8)
        amplitudes = rng.uniform(0.0, 1.0, orders.size) / orders**1.2
        amplitudes *= rng.uniform(0.15, 0.55) / amplitudes.sum()
        phases = rng.uniform(0.0, 2.0 * math.pi, orders.size)
        r = radius * (1.0 + (amplitudes[:, None] * np.cos(orders[:, None] * theta + phases[:, None])).sum(0))
        stretch = rng.uniform(1.0, 1.6)
        points = np.stack([r * np.cos(theta) * stretch, r * np.sin(theta) / stretch], axis=1)
        polygons = [apply_affine(rotation_scale(rng.uniform(0, 2 * math.pi), 1.0), points)]
    elif kind == "polygon":
        count = int(rng.integers(3, 9))
        step = 2.0 * math.pi / count
        theta = np.arange(count) * step + rng.uniform(-0.35, 0.35, count) * step + rng.uniform(0, step)
        r = radius * rng.uniform(0.55, 1.0, count)
        polygons = [np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)]
    else:
        a = radius * rng.uniform(0.6, 1.0)
        b = a * rng.uniform(0.35, 0.9)
        body_angle = rng.uniform(0, 2 * math.pi)
        polygons = [ellipse_points(a, b, body_angle, np.zeros(2))]
        for _ in range(int(rng.integers(1, 5))):
            phi = rng.uniform(0, 2 * math.pi)
            anchor = apply_affine(rotation_scale(body_angle, 1.0), np.array([[a * math.cos(phi), b * math.sin(phi)]]))[0]
            direction = anchor / (np.linalg.norm(anchor) + 1e-6)
            length = radius * rng.uniform(0.2, 0.55)
            width = length * rng.uniform(0.2, 0.6)
            angle = math.atan2(direction[1], direction[0]) + rng.uniform(-0.5, 0.5)
            polygons.append(ellipse_points(length, width, angle, anchor + direction * length * 0.6))
    every = np.concatenate(polygons)
    pad = 3.0
    low = every.min(axis=0) - pad
    width, height = (np.ceil(every.max(axis=0) - low + pad).astype(int) + 1).tolist()
    canvas = np.zeros((height, width), np.uint8)
    for polygon in polygons:
        fixed = np.round((polygon - low) * 16.0).astype(np.int32)
        cv2.fillPoly(canvas, [fixed], 255, lineType=cv2.LINE_AA, shift=4)
    alpha = canvas.astype(np.float32) * np.float32(1.0 / 255.0)
    if rng.random() < 0.3:
        alpha = cv2.GaussianBlur(alpha, (0, 0), rng.uniform(0.3, 0.8))
    return Shape(alpha=alpha, origin=-low, radius=radius)
