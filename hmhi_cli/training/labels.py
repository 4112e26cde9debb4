"""Teacher labels: photos or video frames labelled by the teacher, written as a photo set
(``OUT/images/<name>.jpg`` + ``OUT/masks/<name>.png``, see :mod:`hmhi_cli.data.photos`).

A run is resumable: each item's photo is written first and its mask last, both atomically, so an
item counts as labelled once its mask is there and an interrupted run leaves no half-written file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

from hmhi_cli.atomic import remove_partials
from hmhi_cli.data.layouts import IMAGE_SUFFIXES, natural_sort_key
from hmhi_cli.data.photos import IMAGE_FOLDER, MASK_FOLDER
from hmhi_cli.errors import InputError, OutputError
from hmhi_cli.training.teacher import resize
from hmhi_cli.video import write_image

DAVIS_FRAMES = "JPEGImages"
DAVIS_RESOLUTION = "480p"
JPEG_QUALITY = 90


class Labeller(Protocol):
    def predict(self, rgb: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class LabelItem:
    """One photo or frame to label, and the name its outputs get."""

    name: str
    source: Path


@dataclass
class LabelSummary:
    labelled: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    """One line per photo that could not be read."""


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        (child for child in folder.iterdir()
         if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES and not child.name.startswith(".")),
        key=lambda child: natural_sort_key(child.name),
    )


def _frames_root(source: Path) -> Path:
    """The folder to list: ``JPEGImages/480p`` (else ``JPEGImages``) of a DAVIS-layout root, else ``source``."""
    frames = source / DAVIS_FRAMES
    if (frames / DAVIS_RESOLUTION).is_dir():
        return frames / DAVIS_RESOLUTION
    return frames if frames.is_dir() else source


def list_label_items(source: str | os.PathLike, every: int = 1, skip: Path | None = None) -> list[LabelItem]:
    """The photos of a folder (named by stem), or the frames of every folder below it (a video each,
    named ``<folder>_<stem>``; of a DAVIS-layout root, those of ``JPEGImages/480p``), taking every
    ``every``-th image of each folder; ``skip`` (such as the output folder) is left out."""
    source = Path(source)
    if not source.is_dir():
        raise InputError(f"not a folder: {source}")
    if every < 1:
        raise InputError(f"--every must be at least 1, got {every}")
    root = _frames_root(source)
    items: list[LabelItem] = []
    for folder, children, _ in os.walk(root):
        folder_path = Path(folder)
        children[:] = sorted((child for child in children if not child.startswith(".")
                              and (skip is None or (folder_path / child).resolve() != skip.resolve())),
                             key=natural_sort_key)
        relative = folder_path.relative_to(root)
        prefix = "_".join(relative.parts) + "_" if relative.parts else ""
        images = _images_in(folder_path)
        items.extend(LabelItem(prefix + image.stem, image) for image in images[::every])
    if not items:
        raise InputError(f"no .jpg/.jpeg/.png images in {source} or the folders below it")
    names: dict[str, Path] = {}
    for item in items:
        if item.name in names:
            raise InputError(f"two images would both be labelled {item.name}: {names[item.name]} and {item.source}")
        names[item.name] = item.source
    return items


def _output_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    longest = max(height, width)
    if not max_side or longest <= max_side:
        return height, width
    scale = max_side / longest
    return max(1, round(height * scale)), max(1, round(width * scale))


def label_items(items: list[LabelItem], out: str | os.PathLike, teacher: Labeller, max_side: int | None = 480,
                on_item: Callable[[LabelItem, bool], None] | None = None) -> LabelSummary:
    """Label every item not yet labelled in ``out``: the photo (shrunk to ``max_side`` on its longest
    side, JPEG) and the teacher's soft map at the same size (8-bit grey PNG, 255 = object).
    ``on_item(item, labelled)`` follows each item; ``labelled`` is False for one skipped or unreadable."""
    out = Path(out)
    images, masks = out / IMAGE_FOLDER, out / MASK_FOLDER
    for folder in (images, masks):
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"{folder} exists and is not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        remove_partials(folder)
    summary = LabelSummary()
    for item in items:
        image_path, mask_path = images / f"{item.name}.jpg", masks / f"{item.name}.png"
        if image_path.is_file() and mask_path.is_file():
            summary.skipped += 1
            if on_item:
                on_item(item, False)
            continue
        bgr = cv2.imread(str(item.source), cv2.IMREAD_COLOR)
        if bgr is None or bgr.size == 0:
            summary.failed.append(f"cannot read {item.source}")
            if on_item:
                on_item(item, False)
            continue
        soft = teacher.predict(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        height, width = _output_size(*bgr.shape[:2], max_side)
        mask = np.round(resize(soft, width, height) * 255.0).clip(0, 255).astype(np.uint8)
        write_image(image_path, resize(bgr, width, height), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        write_image(mask_path, mask, [cv2.IMWRITE_PNG_COMPRESSION, 3])
        summary.labelled += 1
        if on_item:
            on_item(item, True)
    return summary
