"""``hmhi segment`` as a library call: a video (file, image folder or stdin) in; masks,
soft maps, mask video, alpha mattes, composites and an overlay preview out, into a folder or as
one lossless video stream (for a pipe).

Frames stream through decode -> flow (one frame of look-ahead) -> model -> encoders, so memory
does not grow with the video's length. A :class:`SegmentationEngine` loads the network once and
segments any number of videos with it. Outputs land in an :class:`~hmhi_cli.output_folder.OutputFolder`:
one run at a time, all outputs or none, and the next run deletes what a killed one left.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from hmhi_cli.data.layouts import list_images
from hmhi_cli import runtime
from hmhi_cli.errors import InputError, OutputError
from hmhi_cli.flow import FlowEstimator, resolve_flow_backend
from hmhi_cli.inference import (
    SegmentedFrame,
    Segmenter,
    StageTimes,
    load_segmentation_weights,
    resolve_device,
)
from hmhi_cli.interrupt import raise_if_stopped
from hmhi_cli.matte import FrameMatte, MatteSettings
from hmhi_cli.model import HMHINet
from hmhi_cli.output_folder import OutputFolder
from hmhi_cli.pipeline import Worker, run_ahead
from hmhi_cli.video import (
    AlphaVideoWriter,
    Background,
    Frame,
    FrameSource,
    ImageFolderSource,
    MaskVideoWriter,
    OverlayVideoWriter,
    PngSequenceWriter,
    RgbVideoWriter,
    StreamVideoWriter,
    add_audio,
    composite,
    open_source,
    overlay,
    parse_background,
    read_image,
)
from hmhi_cli.video.trim import Trim, TrimmedSource
from hmhi_cli.weights import MAX_INPUT_SIZE, WeightsInfo

OUTPUT_KINDS = ("masks", "probs", "mask-video", "alpha", "overlay")
DEFAULT_OUTPUTS = ("masks", "mask-video")
MAX_SIZE = MAX_INPUT_SIZE
FPS_RANGE = (0.01, 1000.0)
"""Frame rates accepted for an image-folder input."""


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
    audio: bool = True
    """Keep the source's sound in ``overlay.mp4`` and ``composite.mp4``."""
    matte: MatteSettings = field(default_factory=MatteSettings)
    """The matte of the alpha outputs and the composite (see :mod:`hmhi_cli.matte`)."""
    trim: Trim | None = None
    """The part of each video to segment (see :mod:`hmhi_cli.video.trim`); None: all of it."""

    def __post_init__(self) -> None:
        unknown = [kind for kind in self.outputs if kind not in OUTPUT_KINDS]
        if unknown or not self.outputs:
            raise InputError(f"unknown output {', '.join(unknown) or '(none)'}; choose from {', '.join(OUTPUT_KINDS)}")
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"--threshold must be strictly between 0 and 1, got {self.threshold}")
        if self.size is not None and not (32 <= self.size <= MAX_SIZE and self.size % 32 == 0):
            raise InputError(f"--size must be a multiple of 32 from 32 to {MAX_SIZE}, got {self.size} "
                             "(memory grows with the square of the size: 4096 takes over 12 GB)")
        if self.memory_limit is not None and self.memory_limit < 1:
            raise InputError(f"--memory-limit must be at least 1 frame, got {self.memory_limit}")
        low, high = FPS_RANGE
        if self.fps is not None and not low <= self.fps <= high:
            raise InputError(f"--fps must be from {low:g} to {high:g} frames per second, got {self.fps}")
        if self.trim is not None and self.flow_dir is not None:
            raise InputError("--flow-dir holds the flow of a whole video: it cannot be combined with "
                             "--start, --duration or --frames")


@dataclass
class SegmentResult:
    """What a run produced, for scripts (``--json``). ``seconds`` is the whole run,
    ``startup_seconds`` its part before the first frame (opening the input and outputs, and
    loading the weights and the flow backend when the engine had not loaded them yet)."""

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
    audio: str | None = None
    """What became of the source's sound: ``"aac copied"``, ``"pcm_s16le re-encoded to aac"``, or None."""

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


def carries_audio(options: SegmentOptions) -> bool:
    """Whether these options write a video that carries the source's sound (overlay, composite)."""
    return "overlay" in options.outputs or ("alpha" in options.outputs and bool(options.background))


def run_warnings(options: SegmentOptions, source: FrameSource, streaming: bool = False) -> list[str]:
    """One sentence for each option given that does nothing with this input and these outputs,
    and for sound that cannot be kept."""
    warnings = []
    if options.lossless and streaming:
        warnings.append("--lossless has no effect with -o -: the stream is always lossless")
    elif options.lossless and "mask-video" not in options.outputs:
        warnings.append("--lossless has no effect without --save mask-video")
    if options.background and "alpha" not in options.outputs:
        warnings.append("--background has no effect without --save alpha")
    if options.matte != MatteSettings() and "alpha" not in options.outputs:
        warnings.append("--matte, --choke, --feather and --invert have no effect without --save alpha")
    if options.fps is not None and not isinstance(source, ImageFolderSource):
        warnings.append("--fps has no effect on a video input: videos keep their own timing")
    if not options.audio and (streaming or not carries_audio(options)):
        warnings.append("--no-audio has no effect: only overlay.mp4 and composite.mp4 carry sound")
    if options.audio and not streaming and carries_audio(options) and source.audio_codec and not source.rewindable:
        warnings.append(f"the sound of {source.label} is not kept: a pipe is read once; "
                        "pipe an MP4 or give the file's name to keep it")
    return warnings


def precision_warnings(options: SegmentOptions) -> list[str]:
    """A sentence when the precision asked for is slow on the device: bf16 on a CPU that has no bf16 instructions."""
    if options.precision != "bf16" or resolve_device(options.device).type != "cpu" or runtime.cpu_has_native_bf16():
        return []
    return ["--precision bf16 will be slow: this CPU has no native bf16 (AVX-512 BF16 or AMX), so it is emulated, "
            "several times slower than fp32; use --precision fp32"]


def _precomputed_flows(flow_dir: Path) -> Iterator[np.ndarray]:
    for path in list_images(flow_dir):
        yield read_image(path)


STREAM_CHANNELS = {"masks": 1, "mask-video": 1, "probs": 1, "alpha": 4, "overlay": 3}
"""Channels of the one video ``-o -`` streams, per output kind: grey masks or soft maps, RGBA cut-out
(RGB composite with a background), RGB overlay."""

OnStart = Callable[[int | None, float | None], None]
OnFrame = Callable[[int], None]
OnMessage = Callable[[str], None]
OnFinish = Callable[[str], None]
"""Called with the names of the outputs being finished once the last frame is segmented."""
FrameWriter = Callable[[Frame, np.ndarray], None]


@dataclass
class LoadedModel:
    """The network and flow backend an engine segments with (``estimator`` None: precomputed flow)."""

    net: HMHINet
    info: WeightsInfo
    weights_path: Path
    size: int
    device: torch.device
    estimator: FlowEstimator | None

    @property
    def flow_name(self) -> str:
        return "precomputed" if self.estimator is None else self.estimator.name


class SegmentationEngine:
    """Segments videos with one set of :class:`SegmentOptions`: the network, the flow backend and
    the device are loaded once, on first use, and shared by every video (see :mod:`hmhi_cli.batch`).

    ``on_info(message)`` receives the note on what was loaded, once. Raises :class:`InputError`
    at once for a ``background`` that is neither a colour nor an image.
    """

    def __init__(self, options: SegmentOptions | None = None, on_info: OnMessage | None = None) -> None:
        self.options = options or SegmentOptions()
        self.background: Background | None = parse_background(self.options.background) if self.options.background else None
        self._on_info = on_info
        self._model: LoadedModel | None = None

    def load(self) -> LoadedModel:
        """Load the weights and the flow backend unless already loaded; return them."""
        if self._model is None:
            options = self.options
            net, info, weights_path = load_segmentation_weights(options.weights, options.memory_limit)
            size = options.size or info.input_size
            device = resolve_device(options.device)
            estimator = None
            if options.flow_dir is None:  # an explicitly named RAFT may be downloaded by torchvision when online
                estimator = resolve_flow_backend(options.flow, options.raft_weights, device.type, allow_download=True,
                                                 dis_max_side=info.flow_max_side)
            self._model = LoadedModel(net, info, weights_path, size, device, estimator)
            if self._on_info:
                self._on_info(f"weights {weights_path.name} ({info.encoder}, input {size}, {options.precision}), "
                              f"flow {self._model.flow_name}, device {device}")
        return self._model

    def planned_outputs(self, out_dir: str | Path) -> dict[str, Path]:
        """Final paths of every output a run into ``out_dir`` writes."""
        return planned_outputs(Path(out_dir), self.options.outputs, self.options.lossless, self.options.background)

    def open(self, source_spec: str | Path, on_warning: OnMessage | None = None,
             streaming: bool = False) -> FrameSource:
        """The input with these options' frame rate and trim, after warning of options it ignores."""
        source = open_source(source_spec, fps=self.options.fps)
        try:
            _warn(on_warning, run_warnings(self.options, source, streaming))
            _warn(on_warning, precision_warnings(self.options))
            return source if self.options.trim is None else TrimmedSource(source, self.options.trim)
        except BaseException:
            source.close()
            raise

    def segment(self, source_spec: str | Path, out_dir: str | Path, on_start: OnStart | None = None,
                on_frame: OnFrame | None = None, on_warning: OnMessage | None = None,
                notes: Mapping[str, dict] | None = None, on_finish: OnFinish | None = None) -> SegmentResult:
        """Segment one video into ``out_dir``; return what was written. See :func:`segment_video`.

        ``notes`` maps hidden file names to data written there as JSON with the outputs (such as
        which input made them, see :mod:`hmhi_cli.batch`), replacing notes of an earlier run.
        """
        options = self.options
        started = time.perf_counter()
        source = self.open(source_spec, on_warning)
        with source:
            paths = self.planned_outputs(out_dir)
            with OutputFolder(out_dir) as folder:
                existing = [str(path) for path in paths.values() if os.path.lexists(path)]
                if existing and not options.overwrite:
                    raise OutputError(f"output exists: {existing[0]}" + (f" (+{len(existing) - 1} more)" if len(existing) > 1 else "")
                                      + "; pass --overwrite to replace")
                staged = {kind: folder.staging / path.name for kind, path in paths.items()}

                def open_outputs(stack: contextlib.ExitStack) -> FrameWriter:
                    writers = _open_writers(stack, staged, source)
                    return lambda frame, probability: _write_frame(writers, frame, self._matte(frame, probability),
                                                                   self.background)

                videos = [path.name for path in paths.values() if path.suffix] or [path.name for path in paths.values()]
                finishing = ", ".join(videos)
                count, startup, times = self._run(source, open_outputs, started, on_start, on_frame,
                                                  lambda: on_finish and on_finish(finishing))
                audio = self._keep_audio(source, staged, on_warning)
                note_paths = [folder.stage_note(name, data) for name, data in (notes or {}).items()]
                raise_if_stopped()
                folder.commit([*paths.values(), *note_paths], options.overwrite, replaceable=note_paths)
        return self._result(source, count, {kind: str(path) for kind, path in paths.items()}, started, startup,
                            times, audio)

    def stream(self, source_spec: str | Path, output: BinaryIO, label: str = "stdout", on_start: OnStart | None = None,
               on_frame: OnFrame | None = None, on_warning: OnMessage | None = None,
               on_finish: OnFinish | None = None) -> SegmentResult:
        """Segment one video into ``output`` as one lossless video (:class:`StreamVideoWriter`); return
        what was written. See :func:`segment_to_stream`."""
        options = self.options
        if len(options.outputs) != 1:
            raise InputError(f"-o - streams one video: choose one of {', '.join(OUTPUT_KINDS)} with --save, "
                             f"not {','.join(options.outputs)}")
        kind = options.outputs[0]
        channels = 3 if kind == "alpha" and self.background else STREAM_CHANNELS[kind]
        started = time.perf_counter()
        source = self.open(source_spec, on_warning, streaming=True)
        with source:

            def open_outputs(stack: contextlib.ExitStack) -> FrameWriter:
                writer = stack.enter_context(StreamVideoWriter.for_source(output, source, channels=channels, label=label))
                return lambda frame, probability: writer.write(
                    _stream_image(kind, frame, self._matte(frame, probability), self.background),
                    pts=frame.pts, duration=frame.duration)

            count, startup, times = self._run(source, open_outputs, started, on_start, on_frame,
                                              lambda: on_finish and on_finish(label))
        return self._result(source, count, {kind: label}, started, startup, times, None)

    def _matte(self, frame: Frame, probability: np.ndarray) -> FrameMatte:
        return FrameMatte(probability, frame.rgb, self.options.matte, self.options.threshold)

    def _run(self, source: FrameSource, open_outputs: Callable[[contextlib.ExitStack], FrameWriter], started: float,
             on_start: OnStart | None, on_frame: OnFrame | None,
             finishing: Callable[[], object]) -> tuple[int, float, StageTimes]:
        """Decode, segment and write every frame of ``source``; return the frame count, the seconds
        from ``started`` to the first frame and the time spent per stage. ``finishing()`` is called
        once the last frame is segmented, before the encoders drain and close."""
        model = self.load()
        segmenter = Segmenter(model.net, model.estimator, model.size, model.device, self.options.precision)
        if on_start:
            on_start(source.frame_count, source.duration_seconds)
        pending: deque[Frame] = deque()  # decoded frames awaiting their result, in order

        def frames() -> Iterator[np.ndarray]:
            for frame in source:
                pending.append(frame)
                yield frame.rgb

        def write(result: SegmentedFrame) -> None:
            start = time.perf_counter()
            write_frame(pending.popleft(), result.probability)
            segmenter.times.encode += time.perf_counter() - start
            if on_frame:
                on_frame(result.index + 1)

        flows = _precomputed_flows(self.options.flow_dir) if self.options.flow_dir else None
        after_last = source.next_rgb if isinstance(source, TrimmedSource) else None
        with contextlib.ExitStack() as stack:
            write_frame = open_outputs(stack)
            encoder = stack.enter_context(Worker(write, name="hmhi-encode"))
            startup = time.perf_counter() - started
            pairs = segmenter.pairs(frames(), flows, after_last=after_last)
            for result in segmenter.run(run_ahead(pairs, name="hmhi-decode-flow")):
                encoder.submit(result)
            if segmenter.times.frames == 0:
                raise InputError(f"{source.label}: no frames decoded")
            finishing()
        return segmenter.times.frames, startup, segmenter.times

    def _keep_audio(self, source: FrameSource, staged: dict[str, Path], on_warning: OnMessage | None) -> str | None:
        """Put the source's sound into the staged overlay and composite videos; say what was done
        (None: nothing, or a sound that cannot be kept was left out, said through ``on_warning``)."""
        if not (self.options.audio and source.audio_codec and source.rewindable):
            return None
        done = None
        start = source.offset_seconds if isinstance(source, TrimmedSource) else None
        for kind in ("overlay", "composite"):
            if kind in staged:
                with source.reopen() as audio_input:
                    done = add_audio(staged[kind], audio_input, source.label, on_warning, start_seconds=start)
        return done

    def _result(self, source: FrameSource, count: int, outputs: dict[str, str], started: float, startup: float,
                times: StageTimes, audio: str | None) -> SegmentResult:
        model = self.load()
        return SegmentResult(
            input=source.label, frames=count, width=source.width, height=source.height, fps=float(source.fps),
            variable_frame_rate=source.is_vfr, outputs=outputs, weights=str(model.weights_path),
            encoder=model.info.encoder, input_size=model.size, flow=model.flow_name, device=str(model.device),
            precision=self.options.precision, seconds=round(time.perf_counter() - started, 3),
            startup_seconds=round(startup, 3), stages=times.to_dict(), audio=audio,
        )


def segment_video(source_spec: str | Path, out_dir: str | Path, options: SegmentOptions | None = None,
                  on_start: OnStart | None = None, on_frame: OnFrame | None = None,
                  on_info: OnMessage | None = None, on_warning: OnMessage | None = None) -> SegmentResult:
    """Segment one video into ``out_dir``; return what was written.

    ``on_start(frame_count, duration_seconds)`` is called once the input is open (either may be
    None), ``on_frame(done)`` after each frame, ``on_info(message)`` for notes such as the
    flow backend chosen, ``on_warning(message)`` for each option that has no effect.
    Raises :class:`OutputError` at once when another run is writing into ``out_dir``. A run that
    fails or is interrupted leaves ``out_dir`` as it found it (less what killed runs left there).
    To segment several videos with one loading of the weights, use :class:`SegmentationEngine`.
    """
    return SegmentationEngine(options, on_info).segment(source_spec, out_dir, on_start, on_frame, on_warning)


def segment_to_stream(source_spec: str | Path, output: BinaryIO, options: SegmentOptions | None = None,
                      label: str = "stdout", on_start: OnStart | None = None, on_frame: OnFrame | None = None,
                      on_info: OnMessage | None = None, on_warning: OnMessage | None = None) -> SegmentResult:
    """Segment one video into the binary file object ``output`` (stdout for a pipe) as one lossless
    video, FFV1 in Matroska, with the source's timestamps; return what was written.

    ``options.outputs`` must name one kind (:data:`STREAM_CHANNELS`). ``label`` names ``output`` in
    messages; the callbacks are those of :func:`segment_video`. A reader that closes the pipe
    early raises :class:`BrokenPipeError`.
    """
    return SegmentationEngine(options, on_info).stream(source_spec, output, label, on_start, on_frame, on_warning)


def _warn(on_warning: OnMessage | None, messages: list[str]) -> None:
    if on_warning:
        for message in messages:
            on_warning(message)


def _stream_image(kind: str, frame: Frame, matte: FrameMatte, background: Background | None) -> np.ndarray:
    """The frame that ``-o -`` streams for an output kind."""
    if kind == "probs":
        return matte.soft
    if kind == "alpha":
        return composite(frame.rgb, matte.alpha, background) if background else np.dstack([frame.rgb, matte.alpha])
    return overlay(frame.rgb, matte.mask) if kind == "overlay" else matte.mask


def _open_writers(stack: contextlib.ExitStack, paths: dict[str, Path], source: FrameSource) -> dict:
    writers: dict = {}
    for kind in ("masks", "probs", "alpha_png"):
        if kind in paths:
            writers[kind] = stack.enter_context(PngSequenceWriter(paths[kind]))
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


def _write_frame(writers: dict, frame: Frame, matte: FrameMatte, background) -> None:
    timing = dict(pts=frame.pts, duration=frame.duration)
    if "masks" in writers:
        writers["masks"].write(frame.index, matte.mask)
    if "probs" in writers:
        writers["probs"].write(frame.index, matte.soft)
    if "mask_video" in writers:
        writers["mask_video"].write(matte.mask, **timing)
    if "alpha_png" in writers:
        writers["alpha_png"].write(frame.index, np.dstack([frame.rgb, matte.alpha]))
    for kind in ("alpha_webm", "alpha_mov"):
        if kind in writers:
            writers[kind].write(frame.rgb, matte.alpha, **timing)
    if "composite" in writers:
        writers["composite"].write(composite(frame.rgb, matte.alpha, background), **timing)
    if "overlay" in writers:
        writers["overlay"].write(frame.rgb, matte.mask, **timing)
