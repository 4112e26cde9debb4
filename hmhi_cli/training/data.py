"""Training clips: T-frame windows from real sequences, clips made from labelled photos, and
synthetic clips, with flow computed the way inference computes it (frame t to t+1) on the
frames as the network sees them (after any random view), and the paper's augmentations."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from hmhi_cli.data.layouts import Sequence, load_dataset
from hmhi_cli.data.photos import Photo, is_photo_set, load_photo_set, mask_is_usable, read_mask
from hmhi_cli.data.synthetic import SyntheticClipConfig, make_clip
from hmhi_cli.errors import InputError
from hmhi_cli.evaluation import read_annotation
from hmhi_cli.flow import DisFlowEstimator, FlowEstimator
from hmhi_cli.model.inputs import to_model_input
from hmhi_cli.training.photo_clips import PhotoClipConfig, make_photo_clip
from hmhi_cli.training.views import ViewConfig, apply_view, random_view
from hmhi_cli.video import read_image


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset root (video sequences, or a photo set: ``images/`` + ``masks/``) with a repeat
    factor: clips are drawn in proportion to repeat x annotated frames (or photos)."""

    root: Path
    repeat: float = 1.0
    layout: str = "auto"
    sequences: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> DatasetSpec:
        """``ROOT`` or ``ROOT:REPEAT`` or ``ROOT:REPEAT:seq1,seq2``."""
        parts = text.split(":")
        root = Path(parts[0])
        repeat = float(parts[1]) if len(parts) > 1 and parts[1] else 1.0
        sequences = tuple(parts[2].split(",")) if len(parts) > 2 and parts[2] else None
        if repeat <= 0:
            raise InputError(f"dataset repeat factor must be positive: {text}")
        return cls(root, repeat, sequences=sequences)


@dataclass
class ClipBatch:
    images: torch.Tensor  # (B, T, 3, S, S)
    flows: torch.Tensor  # (B, T, 3, S, S)
    masks: torch.Tensor  # (B, T, 1, S, S) float 0/1


def _read_mask(path: Path, height: int, width: int) -> np.ndarray:
    """Ground truth as 0/1 at the frame's size, read as the evaluation reads it (palette PNGs too)."""
    mask = read_annotation(path).astype(np.uint8)
    if mask.shape != (height, width):
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
    return mask


def photometric_distortion(frames: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Brightness, contrast, saturation and hue jitter, the same for every frame of a clip."""
    brightness = rng.uniform(-32, 32) if rng.random() < 0.5 else 0.0
    contrast = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else 1.0
    saturation = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else 1.0
    hue = rng.uniform(-18, 18) if rng.random() < 0.5 else 0.0
    out = []
    for frame in frames:
        image = frame.astype(np.float32) * contrast + brightness
        hsv = cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
        hsv[..., 0] = (hsv[..., 0] + hue / 2) % 180
        out.append(cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB))
    return out


@dataclass
class ClipSampler:
    """Draws training batches; batch ``step`` depends only on (seed, step, rank), so a resumed
    run draws exactly the batches it would have drawn.

    The defaults are :class:`~hmhi_cli.training.trainer.TrainConfig`'s: real clips only, and DIS
    flow at the frame's full size (``flow_max_side=None``), as inference computes it by default.
    Photo sets among ``datasets`` become moving clips (:mod:`~hmhi_cli.training.photo_clips`)
    over other photos and video frames; photos whose mask fails :func:`mask_is_usable` are left out.
    """

    datasets: list[DatasetSpec]
    size: int
    clip_length: int = 5
    window: int = 10
    synthetic_fraction: float = 0.0
    flip_probability: float = 0.5
    photometric: bool = True
    seed: int = 0
    flow_max_side: int | None = None
    texture_images: tuple[Path, ...] = ()
    view_probability: float = 0.0

    def __post_init__(self) -> None:
        self.sequences: list[Sequence] = []
        self.photo_sets: list[list[Photo]] = []
        weights: list[float] = []
        photo_weights: list[float] = []
        for spec in self.datasets:
            if spec.sequences is None and is_photo_set(spec.root):
                photos = [photo for photo in load_photo_set(spec.root) if mask_is_usable(read_mask(photo.mask))]
                if photos:
                    self.photo_sets.append(photos)
                    photo_weights.append(spec.repeat * len(photos))
                continue
            loaded = load_dataset(spec.root, layout=spec.layout, sequences=list(spec.sequences) if spec.sequences else None)
            for sequence in loaded:
                if len(sequence.frames) < 2 or not sequence.annotations:
                    continue
                self.sequences.append(sequence)
                weights.append(spec.repeat * len(sequence.annotations))
        if not self.sequences and not self.photo_sets and self.synthetic_fraction < 1.0:
            raise InputError("no training sequences or photos found and synthetic clips are switched off")
        total = max(sum(weights) + sum(photo_weights), 1e-9)
        self.source_weights = np.asarray(weights + photo_weights, np.float64) / total
        self.estimator: FlowEstimator = DisFlowEstimator(preset="medium", max_side=self.flow_max_side)
        self.synthetic_config = SyntheticClipConfig(size=(self.size, self.size), num_frames=self.clip_length + 1,
                                                     texture_images=self.texture_images)
        self.view_config = ViewConfig(probability=self.view_probability)
        self.photo_config = PhotoClipConfig()

    def batch(self, step: int, batch_size: int, rank: int = 0) -> ClipBatch:
        rng = np.random.default_rng([self.seed, rank, step])
        clips = [self._clip(rng) for _ in range(batch_size)]
        images, flows, masks = (torch.stack([clip[i] for clip in clips]) for i in range(3))
        return ClipBatch(images, flows, masks)

    def _clip(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self.source_weights.size or rng.random() < self.synthetic_fraction:
            frames, masks, neighbours = self._synthetic(rng)
        else:
            source = int(rng.choice(self.source_weights.size, p=self.source_weights))
            if source < len(self.sequences):
                frames, masks, neighbours = self._real(self.sequences[source], rng)
            else:
                frames, masks, neighbours = self._photo(self.photo_sets[source - len(self.sequences)], rng)
            view = random_view(self.view_config, *frames[0].shape[:2], masks[0], rng)
            frames, neighbours, masks = apply_view(view, frames, neighbours, masks)
        if rng.random() < self.flip_probability:
            frames = [np.ascontiguousarray(f[:, ::-1]) for f in frames]
            neighbours = [np.ascontiguousarray(f[:, ::-1]) for f in neighbours]
            masks = [np.ascontiguousarray(m[:, ::-1]) for m in masks]
        flows = [self.estimator.flow_image(frame, neighbour, self.size) for frame, neighbour in zip(frames, neighbours)]
        if self.photometric:
            frames = photometric_distortion(frames, rng)
        image_tensor = torch.stack([to_model_input(f, self.size) for f in frames])
        flow_tensor = torch.stack([to_model_input(f, self.size) for f in flows])
        mask_tensor = torch.stack([
            torch.from_numpy(cv2.resize(m, (self.size, self.size), interpolation=cv2.INTER_NEAREST)).float()[None]
            for m in masks
        ])
        return image_tensor, flow_tensor, mask_tensor

    def _synthetic(self, rng: np.random.Generator):
        clip = make_clip(self.synthetic_config, rng)
        count = self.clip_length
        frames = [clip.frames[t] for t in range(count)]
        neighbours = [clip.frames[t + 1] for t in range(count)]
        return frames, [clip.masks[t] for t in range(count)], neighbours

    def _real(self, sequence: Sequence, rng: np.random.Generator):
        """A clip of annotated frames in order, drawn within a window of ``window`` of them."""
        annotated = [i for i, frame in enumerate(sequence.frames) if frame.stem in sequence.annotations]
        window = min(self.window, len(annotated))
        start = int(rng.integers(0, len(annotated) - window + 1))
        count = min(self.clip_length, window)
        picked = sorted(rng.choice(annotated[start:start + window], size=count, replace=False).tolist())
        picked += [picked[-1]] * (self.clip_length - count)
        total = len(sequence.frames)
        frames, neighbours, masks = [], [], []
        for index in picked:
            frame = read_image(sequence.frames[index])
            frames.append(frame)
            neighbours.append(read_image(sequence.frames[index + 1 if index + 1 < total else index - 1]))
            masks.append(_read_mask(sequence.annotations[sequence.frames[index].stem], *frame.shape[:2]))
        return frames, masks, neighbours

    def _photo(self, photos: list[Photo], rng: np.random.Generator):
        """A clip made from one photo of the set, over another photo or a sequence's frame."""
        photo = photos[int(rng.integers(len(photos)))]
        image = read_image(photo.image)
        mask = read_mask(photo.mask, *image.shape[:2])
        background = self._background(rng)
        frames, masks = make_photo_clip(image, mask, background, self.clip_length + 1, self.photo_config, rng)
        return frames[:-1], masks[:-1], frames[1:]

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        """A frame of a training sequence (half the time, when there are any) or any photo."""
        if self.sequences and (rng.random() < 0.5 or not self.photo_sets):
            sequence = self.sequences[int(rng.integers(len(self.sequences)))]
            return read_image(sequence.frames[int(rng.integers(len(sequence.frames)))])
        photos = self.photo_sets[int(rng.integers(len(self.photo_sets)))]
        return read_image(photos[int(rng.integers(len(photos)))].image)
