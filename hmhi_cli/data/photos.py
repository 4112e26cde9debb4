"""Labelled photo sets: ``ROOT/images/<name>.jpg`` with ``ROOT/masks/<name>.png`` (8-bit grey,
255 = object), the layout of DUTS-TR and of ``hmhi label``'s teacher labels. Soft masks are
read as they are; :func:`mask_is_usable` screens out the teacher's doubtful ones."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from hmhi_cli.data.layouts import list_images
from hmhi_cli.errors import InputError

IMAGE_FOLDER = "images"
MASK_FOLDER = "masks"


@dataclass(frozen=True)
class Photo:
    """One photo and its mask."""

    image: Path
    mask: Path


@dataclass(frozen=True)
class MaskQuality:
    """What a usable mask looks like; fractions are of the image (area) or of the object."""

    min_area: float = 0.01
    max_area: float = 0.9
    max_uncertain: float = 0.6
    """Pixels between 0.125 and 0.875, as a share of the object's pixels."""
    min_largest_region: float = 0.8
    """Share of the object in its largest connected region."""


def is_photo_set(root: str | os.PathLike) -> bool:
    """Whether ``root`` holds ``images/`` and ``masks/`` folders of image files."""
    root = Path(root)
    if not (root / MASK_FOLDER).is_dir():
        return False
    try:
        return bool(list_images(root / IMAGE_FOLDER))
    except InputError:
        return False


def load_photo_set(root: str | os.PathLike) -> list[Photo]:
    """The photos of ``root`` that have a mask of the same stem, in natural order."""
    root = Path(root)
    if not is_photo_set(root):
        raise InputError(f"not a photo set: {root} (expected images/ and masks/ folders)")
    masks = {path.stem: path for path in list_images(root / MASK_FOLDER)}
    photos = [Photo(image, masks[image.stem]) for image in list_images(root / IMAGE_FOLDER) if image.stem in masks]
    if not photos:
        raise InputError(f"no photo in {root / IMAGE_FOLDER} has a mask of the same name in {root / MASK_FOLDER}")
    return photos


def read_mask(path: Path, height: int | None = None, width: int | None = None) -> np.ndarray:
    """A mask as float32 in [0, 1], at (height, width) when given."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise InputError(f"cannot read mask {path}")
    if height is not None and width is not None and mask.shape != (height, width):
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)
    return mask.astype(np.float32) / 255.0


def mask_is_usable(mask: np.ndarray, quality: MaskQuality = MaskQuality()) -> bool:
    """False for masks that are nearly empty or full, mostly unsure, or in scattered pieces."""
    binary = mask >= 0.5
    area = int(binary.sum())
    if not quality.min_area <= area / mask.size <= quality.max_area:
        return False
    uncertain = int(((mask > 0.125) & (mask < 0.875)).sum())
    if uncertain > quality.max_uncertain * area:
        return False
    count, _, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=8)
    largest = int(stats[1:, cv2.CC_STAT_AREA].max()) if count > 1 else 0
    return largest >= quality.min_largest_region * area
