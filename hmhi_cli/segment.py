"""``hmhi segment`` as a library call: a video (file, image folder or stdin) in; masks,
soft maps, mask video, alpha mattes, foreground layers, composites and an overlay preview out,
into a folder, as one video file (``-o cut.mov``) or as one lossless video stream (for a pipe).
Which outputs a run writes, and where, is :func:`planned_outputs`'s (see :mod:`hmhi_cli.outputs`).
What a run is asked to do is a :class:`~hmhi_cli.segment_options.SegmentOptions` (exported here too).

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

from hmhi_cli.atomic import atomic_path
from hmhi_cli.data.layouts import list_images
from hmhi_cli.errors import InputError, OutputError, WriteError
from hmhi_cli.flow import FlowEstimator, resolve_flow_backend
from hmhi_cli.inference import (
    SegmentedFrame,
    Segmenter,
    StageTimes,
    load_segmentation_weights,
    resolve_device,
)
from hmhi_cli.interrupt import raise_if_stopped
from hmhi_cli.matte import FrameMatte
from hmhi_cli.model import HMHINet
from hmhi_cli.output_folder import OutputFolder, locked_output_file
from hmhi_cli.outputs import (
    DEFAULT_OUTPUTS,
    OUTPUT_KINDS,
    STREAM_CHANNELS,
    STREAM_DEFAULT,
    single_layer,
)
from hmhi_cli.outputs import planned_outputs as _planned_outputs
from hmhi_cli.output_writers import LayerWriters, layer_image
from hmhi_cli.pipeline import Worker, run_ahead
from hmhi_cli.reruns import (
    INPUT_NOTE,
    SETTINGS_NOTE,
    EarlierRun,
    examine,
    existing_outputs_message,
    input_record,
    settings_note,
    settings_record,
)
from hmhi_cli.segment_options import (
    Encoded,
    SegmentOptions,
    encoded_outputs,
    precision_warnings,
    run_warnings,
)
from hmhi_cli.video import (
    Background,
    Frame,
    FrameSource,
    StreamVideoWriter,
    add_audio,
    open_source,
    parse_background,
    read_image,
)
from hmhi_cli.video.trim import TrimmedSource
from hmhi_cli.weights import WeightsInfo

__all__ = ["DEFAULT_OUTPUTS", "OUTPUT_KINDS", "SegmentOptions", "SegmentResult", "SegmentationEngine",
           "planned_outputs", "segment_to_file", "segment_to_stream", "segment_video"]

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


def planned_outputs(out: Path, outputs: tuple[str, ...], lossless: bool, background: str | None,
                    single_file: bool = False) -> dict[str, Path]:
    """Final paths of every output a run writes: into the folder ``out``, or (``single_file``)
    exactly the video file ``out``; see :func:`hmhi_cli.outputs.planned_outputs`."""
    return _planned_outputs(out, outputs, lossless, background, single_file)



def _precomputed_flows(flow_dir: Path) -> Iterator[np.ndarray]:
    for path in list_images(flow_dir):
        yield read_image(path)


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
        self._settings: dict | None = None

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

    def planned_outputs(self, out: str | Path, single_file: bool = False) -> dict[str, Path]:
        """Final paths of every output a run into the folder ``out`` (or, ``single_file``, the file ``out``) writes."""
        options = self.options
        return planned_outputs(Path(out), options.outputs, options.lossless, options.background, single_file)

    def open(self, source_spec: str | Path, on_warning: OnMessage | None, outputs: Encoded,
             mode: str = "folder") -> FrameSource:
        """The input with these options' frame rate and trim, after warning of options that do nothing
        with it and ``outputs`` (see :func:`run_warnings`)."""
        source = open_source(source_spec, fps=self.options.fps)
        try:
            _warn(on_warning, run_warnings(self.options, source, outputs, mode))
            _warn(on_warning, precision_warnings(self.options))
            return source if self.options.trim is None else TrimmedSource(source, self.options.trim)
        except BaseException:
            source.close()
            raise

    def settings(self) -> dict:
        """The record of the options that decide the outputs (see :func:`hmhi_cli.reruns.settings_record`)."""
        if self._settings is None:
            self._settings = settings_record(self.options)
        return self._settings

    def earlier_run(self, source_spec: str | Path, out_dir: str | Path) -> EarlierRun:
        """What ``out_dir`` holds for a run of this video with these options: see
        :func:`hmhi_cli.reruns.examine`, which raises :class:`OutputError` for outputs of another
        input or other settings. With ``overwrite``, always ``EarlierRun.NONE``."""
        if self.options.overwrite:
            return EarlierRun.NONE
        source = None if str(source_spec) == "-" else Path(source_spec)
        return examine(Path(out_dir), self.planned_outputs(out_dir).values(), source, self.settings(),
                       lambda: settings_record(type(self.options)()))

    def segment(self, source_spec: str | Path, out_dir: str | Path, on_start: OnStart | None = None,
                on_frame: OnFrame | None = None, on_warning: OnMessage | None = None,
                notes: Mapping[str, dict] | None = None, on_finish: OnFinish | None = None) -> SegmentResult:
        """Segment one video into ``out_dir``; return what was written. See :func:`segment_video`.

        The settings and the input that made the outputs are written with them
        (:mod:`hmhi_cli.reruns`); ``notes`` maps more hidden file names to data written there as
        JSON. Notes replace those of an earlier run.
        """
        options = self.options
        started = time.perf_counter()
        paths = self.planned_outputs(out_dir)
        source = self.open(source_spec, on_warning, encoded_outputs(paths))
        with source:
            with OutputFolder(out_dir) as folder:
                existing = [str(path) for path in paths.values() if os.path.lexists(path)]
                if existing and not options.overwrite:
                    raise OutputError(existing_outputs_message(Path(out_dir), existing))
                staged = {kind: folder.staging / path.name for kind, path in paths.items()}
                videos = [path.name for path in paths.values() if path.suffix] or [path.name for path in paths.values()]
                finishing = ", ".join(videos)
                count, startup, times = self._run(source, self._writing(staged, source), started, on_start, on_frame,
                                                  lambda: on_finish and on_finish(finishing))
                audio = self._keep_audio(source, staged, on_warning)
                notes = {**self._notes(source_spec), **(notes or {})}
                note_paths = [folder.stage_note(name, data) for name, data in notes.items()]
                raise_if_stopped()
                folder.commit([*paths.values(), *note_paths], options.overwrite, replaceable=note_paths)
        return self._result(source, count, {kind: str(path) for kind, path in paths.items()}, started, startup,
                            times, audio)

    def segment_file(self, source_spec: str | Path, path: str | Path, on_start: OnStart | None = None,
                     on_frame: OnFrame | None = None, on_warning: OnMessage | None = None,
                     on_finish: OnFinish | None = None) -> SegmentResult:
        """Segment one video into exactly one video file, ``path``; return what was written. See
        :func:`segment_to_file`."""
        options = self.options
        started = time.perf_counter()
        path = Path(path)
        paths = self.planned_outputs(path, single_file=True)
        (key,) = paths
        source = self.open(source_spec, on_warning, encoded_outputs(paths), mode="file")
        with source:
            _refuse_existing(path, options.overwrite)
            try:
                with locked_output_file(path), atomic_path(path) as temp:
                    staged = {key: temp}
                    count, startup, times = self._run(source, self._writing(staged, source), started, on_start,
                                                      on_frame, lambda: on_finish and on_finish(path.name))
                    audio = self._keep_audio(source, staged, on_warning)
                    raise_if_stopped()
                    _refuse_existing(path, options.overwrite, during_run=True)
            except OSError as err:
                raise WriteError(f"cannot write {path}: {err.strerror or err}") from err
        return self._result(source, count, {key: str(path)}, started, startup, times, audio)

    def stream(self, source_spec: str | Path, output: BinaryIO, label: str = "stdout", on_start: OnStart | None = None,
               on_frame: OnFrame | None = None, on_warning: OnMessage | None = None,
               on_finish: OnFinish | None = None) -> SegmentResult:
        """Segment one video into ``output`` as one lossless video (:class:`StreamVideoWriter`); return
        what was written. See :func:`segment_to_stream`."""
        options = self.options
        requested = options.outputs or (STREAM_DEFAULT,)
        layer = single_layer(requested, bool(self.background))
        if layer is None:
            raise InputError(f"-o - streams one video: choose one of {', '.join(OUTPUT_KINDS)} with --save, "
                             f"not {','.join(requested)}")
        started = time.perf_counter()
        source = self.open(source_spec, on_warning, [(layer, ".mkv")], mode="stream")
        with source:

            def open_outputs(stack: contextlib.ExitStack) -> FrameWriter:
                writer = stack.enter_context(StreamVideoWriter.for_source(output, source, channels=STREAM_CHANNELS[layer],
                                                                          label=label))
                player = self.background.player(source.height, source.width) if self.background else None
                if player is not None:
                    stack.callback(player.close)
                return lambda frame, probability: writer.write(
                    layer_image(layer, frame, self._matte(frame, probability), lambda: player.for_frame(frame)),
                    pts=frame.pts, duration=frame.duration)

            count, startup, times = self._run(source, open_outputs, started, on_start, on_frame,
                                              lambda: on_finish and on_finish(label))
        return self._result(source, count, {",".join(requested): label}, started, startup, times, None)

    def _writing(self, staged: dict[str, Path], source: FrameSource) -> Callable[[contextlib.ExitStack], FrameWriter]:
        """What opens the writers of ``staged`` and gives the function that writes a frame to them."""
        def open_outputs(stack: contextlib.ExitStack) -> FrameWriter:
            writers = LayerWriters(stack, staged, source, self.background, self.options.crf, self.options.prores_profile)
            return lambda frame, probability: writers.write(frame, self._matte(frame, probability))
        return open_outputs

    def _notes(self, source_spec: str | Path) -> dict[str, dict]:
        """The notes a run leaves with its outputs: the settings and the input."""
        model = self.load()
        made_with = {"device": str(model.device), "flow": model.flow_name, "input_size": model.size,
                     "memory_limit": self.options.memory_limit or model.info.memory_limit}
        source = None if str(source_spec) == "-" else Path(source_spec)
        return {SETTINGS_NOTE: settings_note(self.settings(), made_with), INPUT_NOTE: input_record(source)}

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

    ``options.outputs`` must name one kind (default: the mask video). ``label`` names ``output`` in
    messages; the callbacks are those of :func:`segment_video`. A reader that closes the pipe
    early raises :class:`BrokenPipeError`.
    """
    return SegmentationEngine(options, on_info).stream(source_spec, output, label, on_start, on_frame, on_warning)


def segment_to_file(source_spec: str | Path, path: str | Path, options: SegmentOptions | None = None,
                    on_start: OnStart | None = None, on_frame: OnFrame | None = None,
                    on_info: OnMessage | None = None, on_warning: OnMessage | None = None) -> SegmentResult:
    """Segment one video into exactly one video file ``path`` (``-o cut.mov``), written to a
    temporary file beside it and renamed when complete; return what was written.

    What the file holds comes from ``options.outputs`` (one kind) or, when they name none, from
    the suffix: see :func:`hmhi_cli.outputs.file_layer`. An existing file is replaced only when
    ``options.overwrite``. The callbacks are those of :func:`segment_video`.
    """
    return SegmentationEngine(options, on_info).segment_file(source_spec, path, on_start, on_frame, on_warning)


def _refuse_existing(path: Path, overwrite: bool, during_run: bool = False) -> None:
    if os.path.lexists(path) and not overwrite:
        when = "appeared during the run" if during_run else "exists"
        raise OutputError(f"output {when}: {path}; pass --overwrite to replace it")


def _warn(on_warning: OnMessage | None, messages: list[str]) -> None:
    if on_warning:
        for message in messages:
            on_warning(message)
