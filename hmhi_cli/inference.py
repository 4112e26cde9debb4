"""Run HMHI-Net over a stream of frames: flow, model input, memory, probability maps.

This is the engine behind ``hmhi segment``, ``hmhi eval --weights`` and validation during
training. Memory use does not grow with the number of frames.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hmhi_cli.data.layouts import load_dataset
from hmhi_cli.errors import InputError, WeightsError
from hmhi_cli.flow import FlowEstimator, flow_targets, model_flow_images
from hmhi_cli.flow import resolve_device as resolve_device_name
from hmhi_cli.matte import refine
from hmhi_cli.model import HMHINet
from hmhi_cli.model.inputs import logits_to_probability, to_model_input
from hmhi_cli.pipeline import run_ahead
from hmhi_cli.runtime import fit_threads_to_load
from hmhi_cli.video import read_image, write_image
from hmhi_cli.weights import WeightsInfo, default_weights_path, load_weights


@dataclass
class StageTimes:
    """Seconds spent per stage, summed over frames (``flow`` includes decoding the frames).

    The stages run in parallel threads, so they can add up to more than the wall time.
    """

    flow: float = 0.0
    model: float = 0.0
    encode: float = 0.0
    frames: int = 0

    def to_dict(self) -> dict:
        per_frame = max(self.frames, 1)
        stages = {"decode_flow": self.flow, "model": self.model, "encode": self.encode}
        return {"frames": self.frames,
                **{f"{name}_s": round(value, 4) for name, value in stages.items()},
                **{f"{name}_s_per_frame": round(value / per_frame, 4) for name, value in stages.items()}}


@dataclass
class SegmentedFrame:
    """One frame's result: the source frame, its flow image and the foreground probability."""

    index: int
    rgb: np.ndarray
    flow_rgb: np.ndarray
    probability: np.ndarray


PRECISIONS = ("fp32", "bf16", "fp16")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for the model: bf16 on CPU (AVX-512/AMX) or CUDA, fp16 on CUDA only."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise InputError("--precision fp16 needs CUDA; use bf16 on the CPU")
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU (see :func:`hmhi_cli.flow.resolve_device`)."""
    return torch.device(resolve_device_name(device))


def load_segmentation_weights(path: str | Path | None, memory_limit: int | None = None) -> tuple[HMHINet, WeightsInfo, Path]:
    """Load ``path``, or the embedded default weights when ``path`` is None."""
    if path is None:
        path = default_weights_path()
        if not path.is_file():
            raise WeightsError(
                f"no trained weights are present ({path} is missing); pass --weights FILE "
                "(a published HMHI-Net checkpoint or an hmhi .safetensors file)")
    net, info = load_weights(path, memory_limit=memory_limit)
    return net, info, Path(path)


@dataclass
class Segmenter:
    """Segments one video at a time with a loaded network and a flow estimator."""

    net: HMHINet
    estimator: FlowEstimator
    size: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "fp32"
    times: StageTimes = field(default_factory=StageTimes)

    def __post_init__(self) -> None:
        if self.size % 32 or self.size < 32:
            raise ValueError(f"model input size must be a positive multiple of 32, got {self.size}")
        self.net = self.net.to(self.device).eval()
        self._autocast = autocast(self.device, self.precision)

    def pairs(self, frames: Iterable[np.ndarray], flows: Iterable[np.ndarray] | None = None,
              after_last: Callable[[], np.ndarray | None] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Each frame (RGB uint8 HxWx3) with its flow image: estimated (flow from t to t+1, on the model's S x S grid), or
        taken from ``flows`` (precomputed flow images, one per frame). ``after_last()``, asked once
        ``frames`` ends, gives the frame that follows the last one (part of a video), if any."""
        if flows is not None:
            frames, flows = iter(frames), iter(flows)
            for index, (frame, flow) in enumerate(itertools.zip_longest(frames, flows)):
                if frame is None or flow is None:
                    frame_count = index + (frame is not None) + sum(1 for _ in frames)
                    flow_count = index + (flow is not None) + sum(1 for _ in flows)
                    raise InputError(f"precomputed flow images do not match the frames: "
                                     f"{frame_count} frames vs {flow_count} flow images")
                yield frame, flow
            return
        iterator = iter(model_flow_images(frames, self.estimator, self.size, after_last))
        while True:
            start = time.perf_counter()
            item = next(iterator, None)
            self.times.flow += time.perf_counter() - start
            if item is None:
                return
            yield item

    def _upload(self, tensor: torch.Tensor) -> torch.Tensor:
        """(3, S, S) CPU tensor -> (1, 3, S, S) on the device; through pinned memory on CUDA so the
        copy does not wait for the previous frame's kernels."""
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True).unsqueeze(0)
        return tensor.unsqueeze(0)

    def run(self, pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[SegmentedFrame]:
        """Yield one :class:`SegmentedFrame` per (frame, flow image) pair, in order."""
        stream = self.net.stream()
        for index, (rgb, flow_rgb) in enumerate(pairs):
            fit_threads_to_load()
            start = time.perf_counter()
            image = self._upload(to_model_input(rgb, self.size))
            flow = self._upload(to_model_input(flow_rgb, self.size))
            with torch.inference_mode(), self._autocast:
                logits = stream.step(image, flow)
            probability = logits_to_probability(logits, rgb.shape[0], rgb.shape[1])
            self.times.model += time.perf_counter() - start
            self.times.frames += 1
            yield SegmentedFrame(index, rgb, flow_rgb, probability)


def segment_dataset(net: HMHINet, root: str | Path, out_dir: Path, size: int, estimator: FlowEstimator | None,
                    sequences: list[str] | None = None, flow_root: Path | None = None,
                    device: torch.device | None = None, precision: str = "fp32",
                    on_frame: Callable[[str, int, int], None] | None = None) -> StageTimes:
    """Write ``out_dir/<seq>/<frame>.png`` refined mattes (:func:`hmhi_cli.matte.refine`: what the masks and
    the alpha of ``hmhi segment`` come from) for every sequence of a dataset.

    Sequences whose maps all exist already are skipped, so an interrupted run resumes.
    ``flow_root`` (the ``--out`` of ``hmhi flow precompute``) supplies precomputed flow images
    instead of ``estimator``. ``on_frame(sequence, done, total)`` reports progress.
    """
    segmenter = Segmenter(net, estimator, size, device or torch.device("cpu"), precision)
    for sequence in load_dataset(root, sequences=sequences):
        targets = [out_dir / sequence.name / f"{frame.stem}.png" for frame in sequence.frames]
        if all(target.is_file() for target in targets):
            continue
        frames = (read_image(path) for path in sequence.frames)
        flows = None
        if flow_root is not None:
            paths = [_precomputed_flow(sequence, frame, flow_root) for frame in sequence.frames]
            flows = (read_image(path) for path in paths)
        for result in segmenter.run(run_ahead(segmenter.pairs(frames, flows))):
            write_image(targets[result.index], refine(result.probability, result.rgb))
            if on_frame:
                on_frame(sequence.name, result.index + 1, len(targets))
    return segmenter.times


def _precomputed_flow(sequence, frame: Path, flow_root: Path) -> Path:
    for image_format in ("jpg", "png"):
        path = flow_targets(sequence, frame, flow_root, image_format).image
        if path.is_file():
            return path
    raise InputError(f"no precomputed flow for {sequence.name}/{frame.name} under {flow_root}; "
                     "run 'hmhi flow precompute' first")

