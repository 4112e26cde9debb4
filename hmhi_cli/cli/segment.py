"""``hmhi segment``: cut the main moving object out of a video, or out of many."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from hmhi_cli.cli.common import (
    Device,
    FlowBackend,
    Precision,
    check_stdout_open,
    show_step,
    err_console,
    print_json,
    printable,
    progress,
)
from hmhi_cli.errors import InputError
from hmhi_cli.interrupt import at_safe_points

if TYPE_CHECKING:
    from hmhi_cli.segment import OnFinish, OnFrame, OnStart, SegmentationEngine, SegmentResult

Warn = Callable[[str], None]

SAVE_HELP = ("Outputs, comma-separated or repeated: masks (PNG 0/255), probs (the raw soft map, PNG), mask-video "
             "(mask.mp4, or mask.mkv with --lossless), alpha-png (RGBA PNGs), alpha-webm (VP9 with alpha), "
             "alpha-mov (ProRes 4444), alpha (all three; composite.mp4 instead with --background, unless composite "
             "is named too), composite (composite.mp4: the object on --background), foreground-png and "
             "foreground-mov (the object's own colour with the matte; foreground: both), overlay (overlay.mp4). "
             "Default: masks,mask-video; with -o FILE or -o -, one kind (default: from the suffix; mask-video).")
MATTE_HELP = ("Matte of the alpha outputs and the composite: refined (opaque object, clear background, "
              "edges refined on the frame), soft (the model's raw soft map) or hard (the mask, 0/255).")
SOURCES_HELP = ("Video files, folders of images (one video each), folders of videos (each of their videos), "
                "or - for a video on stdin.")
START_HELP = ("Begin at the first frame shown at or after SECONDS (ffmpeg's -ss): outputs are rebased to start at 0, "
              "PNGs keep the source's frame numbers. Image folders are timed by --fps.")
OUT_HELP = ("Output folder; with several videos, one subfolder per video (named after its file). "
            "FILE.mp4|.mov|.webm|.mkv writes that one video file (.mov ProRes 4444 with alpha, .webm VP9 with alpha, "
            ".mp4 the mask video or composite, .mkv lossless FFV1). - streams one video to stdout (FFV1 in Matroska).")
BATCH_FAILED = 1


def register(app: typer.Typer) -> None:
    @app.command("segment")
    def segment_command(
        sources: list[str] = typer.Argument(..., help=SOURCES_HELP, show_default=False),
        out: str = typer.Option(..., "--out", "-o", help=OUT_HELP, show_default=False),
        save: list[str] = typer.Option([], "--save", help=SAVE_HELP, show_default=False),
        weights: Path = typer.Option(None, "--weights", help="Weights file (default: the embedded weights)."),
        size: int = typer.Option(None, "--size", help="Model input size S, a multiple of 32 up to 2048 (default: the weights' own, 512 for published)."),
        threshold: float = typer.Option(0.5, "--threshold", help="Foreground probability threshold for masks, strictly between 0 and 1."),
        device: Device = typer.Option(Device.auto, "--device"),
        precision: Precision = typer.Option(Precision.fp32, "--precision", help="bf16: faster on CPUs with AVX-512 BF16/AMX and on CUDA; fp16: CUDA."),
        flow: FlowBackend = typer.Option(FlowBackend.auto, "--flow", help="Optical flow backend."),
        raft_weights: Path = typer.Option(None, "--raft-weights", help="RAFT weights file (torchvision's .pth)."),
        flow_dir: Path = typer.Option(None, "--flow-dir", help="Precomputed flow images, one per frame, in frame order."),
        memory_limit: int = typer.Option(None, "--memory-limit", help="Frames kept in memory, at least 1 (default: the weights')."),
        lossless: bool = typer.Option(False, "--lossless", help="Write mask.mkv (FFV1) instead of mask.mp4."),
        background: str = typer.Option(None, "--background", help="Colour (green, #00ff00, 0,255,0), image or video (looped, scaled to cover) for the composite."),
        matte: str = typer.Option("refined", "--matte", help=MATTE_HELP),
        choke: int = typer.Option(0, "--choke", metavar="PX", help="Erode the matte by PX pixels (negative: expand it), up to 200."),
        feather: int = typer.Option(0, "--feather", metavar="PX", help="Blur the matte's edge over PX pixels each side, up to 200."),
        invert: bool = typer.Option(False, "--invert", help="Invert the matte: the background opaque, the object clear."),
        crf: int = typer.Option(None, "--crf", metavar="N", help="Quality of the lossy encoders, 0 (best) to 51: H.264 mask, overlay and composite videos (default 16, 20, 20) and VP9 (default 18)."),
        prores_profile: str = typer.Option("4444", "--prores-profile", help="ProRes profile of the .mov outputs with alpha: 4444 or 4444xq."),
        fps: float = typer.Option(None, "--fps", help="Frame rate of an image-folder input, 0.01 to 1000 (default 25)."),
        start: float = typer.Option(None, "--start", metavar="SECONDS", help=START_HELP),
        duration: float = typer.Option(None, "--duration", metavar="SECONDS", help="Segment this many seconds from the start (ffmpeg's -t)."),
        frames: int = typer.Option(None, "--frames", metavar="N", help="Segment at most N frames (ffmpeg's -frames:v)."),
        no_audio: bool = typer.Option(False, "--no-audio", help="Leave the source's sound out of overlay.mp4 and composite.mp4."),
        shard: str = typer.Option("0/1", "--shard", help="Do only shard i of n (0-based, e.g. 0/4) of the sorted videos: every n-th from the i-th."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (a link is replaced, not followed); in a batch, redo videos already done."),
        as_json: bool = typer.Option(False, "--json", help="Print a machine-readable summary on stdout; one JSON line per video in a batch."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or notes on stderr."),
    ) -> None:
        """Cut the main moving object out of videos: masks, soft maps, mask video, mattes, overlay."""
        from hmhi_cli.batch import is_batch
        from hmhi_cli.flow import parse_shard
        from hmhi_cli.matte import MatteSettings
        from hmhi_cli.output_folder import make_way_for
        from hmhi_cli.runtime import share_cores_between_stages
        from hmhi_cli.outputs import is_file_target
        from hmhi_cli.segment import SegmentationEngine, SegmentOptions
        from hmhi_cli.video.trim import Trim

        if not out:
            raise InputError("-o/--out is empty (an unset variable?): give an output folder, or - for stdout")
        share_cores_between_stages()

        streaming = out == "-"
        chosen = tuple(dict.fromkeys(item.strip() for entry in save for item in entry.split(",") if item.strip()))
        options = SegmentOptions(
            outputs=chosen, weights=weights, size=size,
            memory_limit=memory_limit, threshold=threshold, device=device.value, precision=precision.value,
            flow=flow.value, raft_weights=raft_weights, flow_dir=flow_dir, lossless=lossless, background=background,
            overwrite=overwrite, fps=fps, audio=not no_audio,
            matte=MatteSettings(kind=matte, choke=choke, feather=feather, invert=invert), crf=crf,
            prores_profile=prores_profile, trim=Trim.from_options(start, duration, frames),
        )
        shard_index, shard_count = parse_shard(shard)
        if not streaming:
            make_way_for(out, overwrite)
        if streaming or as_json:
            check_stdout_open("the video" if streaming else "the JSON")

        def on_info(message: str) -> None:
            if not quiet:
                err_console.print(message, markup=False, highlight=False, soft_wrap=True)

        def on_warning(message: str) -> None:
            if not quiet:
                err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)

        batch = is_batch(sources)
        one_file = not streaming and is_file_target(out)
        if one_file and batch:
            raise InputError(f"-o {out} is one file; several videos need a folder (one subfolder per video)")
        engine = SegmentationEngine(options, on_info)
        if one_file:
            engine.planned_outputs(out, single_file=True)  # refuse what one file cannot hold before loading anything
        try:
            if streaming:
                _check_streamable(batch, as_json, shard_count)
                _segment_to_stdout(sources[0], engine, quiet, on_warning)
            elif batch:
                _segment_batch(sources, Path(out), engine, shard, as_json, quiet, on_warning)
            elif shard_index > 0:
                on_info(f"shard {shard}: nothing to do (one video, in shard 0/{shard_count})")
            else:
                _segment_one(sources[0], Path(out), engine, as_json, quiet, on_warning, one_file)
        except BrokenPipeError:
            _end_on_closed_stdout()


def _check_streamable(batch: bool, as_json: bool, shard_count: int) -> None:
    if batch:
        raise InputError("-o - streams one video: give one input")
    if as_json:
        raise InputError("--json prints on stdout, which -o - fills with the video: leave one of them out")
    if shard_count > 1:
        raise InputError("--shard splits a batch of videos; -o - streams one")
    if sys.stdout.isatty():
        raise InputError("-o - writes a video to stdout, which is a terminal: pipe it into a program "
                         "(| ffmpeg -i - out.mov) or redirect it (> out.mkv)")


def _end_on_closed_stdout() -> None:
    """The reader of stdout has gone (``| head``): point stdout at /dev/null, so that nothing fails
    at exit, and end quietly with 141, as Unix tools stopped by SIGPIPE do."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    raise typer.Exit(128 + signal.SIGPIPE)


def _with_progress(quiet: bool, segment: Callable[[OnStart, OnFrame, OnFinish], SegmentResult]) -> SegmentResult:
    """Run ``segment(on_start, on_frame, on_finish)`` under a progress bar of its frames, stopping at safe points only."""
    with progress(quiet) as bar, at_safe_points():
        task = bar.add_task("segmenting", total=None, unit="fps")
        result = segment(lambda frame_count, _duration: bar.update(task, total=frame_count),
                         lambda done: bar.update(task, completed=done),
                         lambda outputs: show_step(bar, task, f"finishing {outputs}…"))
        bar.update(task, description="segmented", total=result.frames, completed=result.frames)
        return result


def _segment_one(source: str, out: Path, engine: SegmentationEngine, as_json: bool, quiet: bool, on_warning: Warn,
                 one_file: bool) -> None:
    from hmhi_cli.reruns import EarlierRun

    if not one_file and engine.earlier_run(source, out) is EarlierRun.DONE:
        if as_json:
            print_json({"input": source, "output": str(out), "status": "skipped"})
        elif not quiet:
            err_console.print(f"nothing to do: {printable(str(out))} holds the outputs of {printable(source)} made with "
                              "these settings (pass --overwrite to redo them)", markup=False, highlight=False,
                              soft_wrap=True)
        return
    segment = engine.segment_file if one_file else engine.segment
    result = _with_progress(quiet, lambda on_start, on_frame, on_finish: segment(
        source, out, on_start, on_frame, on_warning, on_finish=on_finish))
    if as_json:
        print_json(result.to_dict())
    elif not quiet:
        err_console.print(f"{result.frames} frames in {result.seconds:.1f} s -> {printable(str(out))}", markup=False,
                          highlight=False)


def _segment_to_stdout(source: str, engine: SegmentationEngine, quiet: bool, on_warning: Warn) -> None:
    result = _with_progress(quiet, lambda on_start, on_frame, on_finish: engine.stream(
        source, sys.stdout.buffer, "stdout", on_start, on_frame, on_warning, on_finish))
    if not quiet:
        err_console.print(f"{result.frames} frames in {result.seconds:.1f} s -> stdout", highlight=False)


def _segment_batch(sources: list[str], out: Path, engine: SegmentationEngine, shard: str, as_json: bool, quiet: bool,
                   on_warning: Warn) -> None:
    from hmhi_cli.batch import BatchFrames, collect_videos, segment_batch, shard_videos, stated_counts

    videos = shard_videos(collect_videos(sources), shard)
    warned: set[str] = set()

    def warn_once(message: str) -> None:
        if message not in warned:
            warned.add(message)
            on_warning(message)

    counts = {"done": 0, "skipped": 0, "failed": 0}
    failed = []
    options = engine.options
    now = {"video": -1, "done": 0, "before": 0}  # the video in hand, its frames done, the frames of those ended

    def show_overall() -> None:
        bar.update(overall, total=batch_frames.total, completed=now["before"] + now["done"],
                   description=f"videos {len(batch_frames.ended)}/{len(videos)}")

    def on_video(video) -> None:
        now.update(video=now["video"] + 1, done=0)
        bar.reset(frames, total=None, description=video.name, visible=True)

    def on_start(frame_count: int | None, _duration: float | None) -> None:
        batch_frames.start(now["video"], frame_count)
        bar.update(frames, total=frame_count)
        show_overall()

    def on_frame(done: int) -> None:
        now["done"] = done
        bar.update(frames, completed=done)
        show_overall()

    def on_finish(outputs: str) -> None:
        show_step(bar, frames, f"finishing {videos[now['video']].name}: {outputs}…")

    with progress(quiet) as bar, at_safe_points():
        batch_frames = BatchFrames(stated_counts(videos, options.fps, options.trim))
        overall = bar.add_task(f"videos 0/{len(videos)}", total=batch_frames.total, unit="fps")
        frames = bar.add_task("", total=None, visible=False, unit="fps")
        outcomes = segment_batch(
            videos, out, engine, on_video=on_video, on_start=on_start, on_frame=on_frame, on_warning=warn_once,
            on_finish=on_finish)
        for outcome in outcomes:
            counts[outcome.status] += 1
            frames_done = outcome.result.frames if outcome.result is not None else now["done"]
            batch_frames.end(now["video"], frames_done, outcome.status == "done")
            now.update(before=now["before"] + frames_done, done=0)
            show_overall()
            name, output = outcome.video.name, printable(str(outcome.output))
            if outcome.status == "failed":
                failed.append(name)
                err_console.print(f"[bold red]failed[/] {escape(f'{name}: {printable(outcome.error)}')}", highlight=False,
                                  soft_wrap=True)
            elif not quiet and outcome.status == "skipped":
                note = f" ({outcome.note})" if outcome.note else ""
                err_console.print(f"skipped {name}: its outputs are all in {output}{note}", markup=False,
                                  highlight=False, soft_wrap=True)
            elif not quiet:
                result = outcome.result
                err_console.print(f"done {name}: {result.frames} frames in {result.seconds:.1f} s -> {output}",
                                  markup=False, highlight=False, soft_wrap=True)
            if as_json:
                sys.stdout.write(json.dumps(outcome.to_dict()) + "\n")
                sys.stdout.flush()
        bar.update(frames, visible=False)
    if failed or not quiet:
        summary = f"{len(videos)} videos (shard {shard}): {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed"
        err_console.print(summary + (f": {', '.join(failed)}" if failed else ""), markup=False, highlight=False,
                          soft_wrap=True)
    if failed:
        raise typer.Exit(BATCH_FAILED)
