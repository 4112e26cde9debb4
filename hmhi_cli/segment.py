"""``hmhi segment`` as a library call: a video (file, image folder or stdin) in; masks,
soft maps, mask video, alpha mattes, composites and an overlay preview out.

Frames stream through decode -> flow (one frame of look-ahead) -> model -> encoders, so memory
does not grow with the video's length. Every output appears only when complete: videos are
written to temporary files and PNG folders to hidden temporary folders, renamed at the end.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hmhi_cli.data.layouts import list_images
from hmhi_cli.errors import InputError, OutputError
from hmhi_cli.flow import resolve_flow_backend
from hmhi_cli.inference import (
    SegmentedFrame,
    Segmenter,
    binarize,
    load_segmentation_weights,
    resolve_device,
    to_uint8,
)
from hmhi_cli.pipeline import Worker, run_ahead
from hmhi_cli.video import (
    AlphaVideoWriter,
    Frame,
    MaskVideoWriter,
    OverlayVideoWriter,
    PngSequenceWriter,
    RgbVideoWriter,
    check_writable,
    composite,
    open_source,
    parse_background,
    read_image,
)

OUTPUT_KINDS = ("masks", "probs", "mask-video", "alpha", "overlay")
DEFAULT_OUTPUTS = ("masks", "mask-video")


@dataclass
class SegmentOptions:
    """How to segment; ``None`` sizes and limits come from the weights file."""

    outputs: tuple[str, ...] = DEFAULT_OUTPUTS
    weights: Path | None = None
    size: int | None = None
    memory_limit: int | None = None
    threshold: float = 0.5
    device: str = "auto"
    precision: str = "fp32"
    flow: str = "auto"
    raft_weights: Path | None = None
    flow_dir: Path | None = None
    lossless: bool = False
    background: str | None = None
    overwrite: bool = False
    fps: float | None = None

    def __post_init__(self) -> None:
        unknown = [kind for kind in self.outputs if kind not in OUTPUT_KINDS]
        if unknown or not self.outputs:
            raise InputError(f"unknown output {', '.join(unknown) or '(none)'}; choose from {', '.join(OUTPUT_KINDS)}")
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"--threshold must be between 0 and 1, got {self.threshold}")
        if self.size is not None and (self.size < 32 or self.size % 32):
            raise InputError(f"--size must be a positive multiple of 32, got {self.size}")


@dataclass
class SegmentResult:
    """What a run produced, for scripts (``--json``). ``seconds`` is the whole run,
    ``startup_seconds`` its part before the first frame (opening the input and outputs, loading
    the weights and the flow backend)."""

    input: str
    frames: int
    width: int
    height: int
    fps: float
    variable_frame_rate: bool
    outputs: dict[str, str]
    weights: str
    encoder: str
    input_size: int
    flow: str
    device: str
    precision: str
    seconds: float
    startup_seconds: float = 0.0
    stages: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = dict(self.__dict__)
        data["frames_per_second"] = round(self.frames / self.seconds, 3) if self.seconds else None
        return data


def planned_outputs(out_dir: Path, outputs: tuple[str, ...], lossless: bool, background: str | None) -> dict[str, Path]:
    """Final paths of every output a run will write."""
    paths: dict[str, Path] = {}
    if "masks" in outputs:
        paths["masks"] = out_dir / "masks"
    if "probs" in outputs:
        paths["probs"] = out_dir / "probs"
    if "mask-video" in outputs:
        paths["mask_video"] = out_dir / ("mask.mkv" if lossless else "mask.mp4")
    if "alpha" in outputs:
        if background:
            paths["composite"] = out_dir / "composite.mp4"
        else:
            paths["alpha_png"] = out_dir / "alpha"
            paths["alpha_webm"] = out_dir / "alpha.webm"
            paths["alpha_mov"] = out_dir / "alpha.mov"
    if "overlay" in outputs:
        paths["overlay"] = out_dir / "overlay.mp4"
    return paths


def _staging_folder(final: Path) -> Path:
    return final.parent / f".{final.name}.partial"


@contextlib.contextmanager
def _png_folder(final: Path) -> Iterator[PngSequenceWriter]:
    """A PNG sequence written into a hidden folder that replaces ``final`` on success."""
    staging = _staging_folder(final)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        yield PngSequenceWriter(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)


def _precomputed_flows(flow_dir: Path) -> Iterator[np.ndarray]:
    for path in list_images(flow_dir):
        yield read_image(path)


def segment_video(source_spec: str | Path, out_dir: str | Path, options: SegmentOptions | None = None,
                  on_start: Callable[[int | None, float | None], None] | None = None,
                  on_frame: Callable[[int], None] | None = None,
                  on_info: Callable[[str], None] | None = None) -> SegmentResult:
    """Segment one video into ``out_dir``; return what was written.

    ``on_start(frame_count, duration_seconds)`` is called once the input is open (either may be
    None), ``on_frame(done)`` after each frame, ``on_info(message)`` for notes such as the
    flow backend chosen.
    """
    options = options or SegmentOptions()
    out_dir = Path(out_dir)
    started = time.perf_counter()
    source = open_source(source_spec, fps=options.fps)
    with source:
        paths = planned_outputs(out_dir, options.outputs, options.lossless, options.background)
        existing = [str(path) for path in paths.values() if path.exists()]
        if existing and not options.overwrite:
            raise OutputError(f"output exists: {existing[0]}" + (f" (+{len(existing) - 1} more)" if len(existing) > 1 else "")
                              + "; pass --overwrite to replace")
        background = parse_background(options.background) if options.background else None
        net, info, weights_path = load_segmentation_weights(options.weights, options.memory_limit)
        size = options.size or info.input_size
        device = resolve_device(options.device)
        estimator = None
        if options.flow_dir is None:  # an explicitly named RAFT may be downloaded by torchvision when online
            estimator = resolve_flow_backend(options.flow, options.raft_weights, device.type, allow_download=True)
        segmenter = Segmenter(net, estimator, size, device, options.precision)
        flow_name = "precomputed" if estimator is None else estimator.name
        check_writable(out_dir)
        for path in paths.values():
            shutil.rmtree(_staging_folder(path), ignore_errors=True)
        if on_info:
            on_info(f"weights {weights_path.name} ({info.encoder}, input {size}, {options.precision}), "
                    f"flow {flow_name}, device {device}")
        if on_start:
            on_start(source.frame_count, source.duration_seconds)
        timing: dict[int, Frame] = {}

        def frames() -> Iterator[np.ndarray]:
            for frame in source:
                timing[frame.index] = frame
                yield frame.rgb

        def write(result: SegmentedFrame) -> None:
            start = time.perf_counter()
            _write_frame(writers, timing.pop(result.index), result.probability, options.threshold, background)
            segmenter.times.encode += time.perf_counter() - start
            if on_frame:
                on_frame(result.index + 1)

        flows = _precomputed_flows(options.flow_dir) if options.flow_dir else None
        with contextlib.ExitStack() as stack:
            writers = _open_writers(stack, paths, source)
            encoder = stack.enter_context(Worker(write, name="hmhi-encode"))
            startup = time.perf_counter() - started
            for result in segmenter.run(run_ahead(segmenter.pairs(frames(), flows), name="hmhi-decode-flow")):
                encoder.submit(result)
            count = segmenter.times.frames
            if count == 0:
                raise InputError(f"{source.label}: no frames decoded")
    seconds = time.perf_counter() - started
    return SegmentResult(
        input=source.label, frames=count, width=source.width, height=source.height, fps=float(source.fps),
        variable_frame_rate=source.is_vfr, outputs={kind: str(path) for kind, path in paths.items()},
        weights=str(weights_path), encoder=info.encoder, input_size=size, flow=flow_name, device=str(device),
        precision=options.precision, seconds=round(seconds, 3), startup_seconds=round(startup, 3),
        stages=segmenter.times.to_dict(),
    )


def _open_writers(stack: contextlib.ExitStack, paths: dict[str, Path], source) -> dict:
    writers: dict = {}
    for kind in ("masks", "probs", "alpha_png"):
        if kind in paths:
            writers[kind] = stack.enter_context(_png_folder(paths[kind]))
    if "mask_video" in paths:
        lossless = paths["mask_video"].suffix == ".mkv"
        writers["mask_video"] = stack.enter_context(MaskVideoWriter.for_source(paths["mask_video"], source, lossless=lossless))
    for kind in ("alpha_webm", "alpha_mov"):
        if kind in paths:
            writers[kind] = stack.enter_context(AlphaVideoWriter.for_source(paths[kind], source))
    if "composite" in paths:
        writers["composite"] = stack.enter_context(RgbVideoWriter.for_source(paths["composite"], source))
    if "overlay" in paths:
        writers["overlay"] = stack.enter_context(OverlayVideoWriter.for_source(paths["overlay"], source))
    return writers


def _write_frame(writers: dict, frame: Frame, probability: np.ndarray, threshold: float, background) -> None:
    mask = binarize(probability, threshold)
    soft = to_uint8(probability)
    timing = dict(pts=frame.pts, duration=frame.duration)
    if "masks" in writers:
        writers["masks"].write(frame.index, mask)
    if "probs" in writers:
        writers["probs"].write(frame.index, soft)
    if "mask_video" in writers:
        writers["mask_video"].write(mask, **timing)
    if "alpha_png" in writers:
        writers["alpha_png"].write(frame.index, np.dstack([frame.rgb, soft]))
    for kind in ("alpha_webm", "alpha_mov"):
        if kind in writers:
            writers[kind].write(frame.rgb, soft, **timing)
    if "composite" in writers:
        writers["composite"].write(composite(frame.rgb, soft, background), **timing)
    if "overlay" in writers:
        writers["overlay"].write(frame.rgb, mask, **timing)
