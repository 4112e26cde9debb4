"""``hmhi segment``: cut the main moving object out of a video."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import typer

from hmhi_cli.cli.common import Device, FlowBackend, Precision, err_console, print_json, progress


SAVE_HELP = ("Outputs, comma-separated or repeated: masks (PNG 0/255), probs (soft PNG), mask-video "
             "(mask.mp4, or mask.mkv with --lossless), alpha (RGBA PNGs + alpha.webm + alpha.mov, or "
             "composite.mp4 with --background), overlay (overlay.mp4). Default: masks,mask-video.")


class _Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP as an exception, a KeyboardInterrupt like Ctrl-C, so that the run cleans up the same way."""

    def __init__(self, number: int) -> None:
        super().__init__(signal.Signals(number).name)
        self.number = number


@contextlib.contextmanager
def _stop_on_termination() -> Iterator[None]:
    """Within the block, SIGTERM (kill, timeout) and SIGHUP (terminal closed) raise :class:`_Stopped`."""

    def stop(number: int, _frame) -> None:
        raise _Stopped(number)

    previous = {number: signal.signal(number, stop) for number in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def register(app: typer.Typer) -> None:
    @app.command("segment")
    def segment_command(
        source: str = typer.Argument(..., help="Video file, folder of images, or - for a video on stdin."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
        save: list[str] = typer.Option(["masks,mask-video"], "--save", help=SAVE_HELP),
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
        background: str = typer.Option(None, "--background", help="Colour (green, #00ff00, 0,255,0) or image: composite instead of alpha."),
        fps: float = typer.Option(None, "--fps", help="Frame rate of an image-folder input, 0.01 to 1000 (default 25)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (a link is replaced, not followed)."),
        as_json: bool = typer.Option(False, "--json", help="Print a machine-readable summary on stdout."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or notes on stderr."),
    ) -> None:
        """Cut the main moving object out of a video: masks, soft maps, mask video, mattes, overlay."""
        from hmhi_cli.segment import SegmentOptions, segment_video

        outputs = tuple(dict.fromkeys(item.strip() for entry in save for item in entry.split(",") if item.strip()))
        options = SegmentOptions(
            outputs=outputs, weights=weights, size=size, memory_limit=memory_limit, threshold=threshold,
            device=device.value, precision=precision.value, flow=flow.value, raft_weights=raft_weights, flow_dir=flow_dir, lossless=lossless,
            background=background, overwrite=overwrite, fps=fps,
        )

        def on_info(message: str) -> None:
            if not quiet:
                err_console.print(message, highlight=False)

        def on_warning(message: str) -> None:
            if not quiet:
                err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)

        try:
            with _stop_on_termination(), progress(quiet) as bar:
                task = bar.add_task("segmenting", total=None)

                def on_start(frame_count: int | None, _duration: float | None) -> None:
                    bar.update(task, total=frame_count)

                result = segment_video(source, out, options, on_start=on_start,
                                       on_frame=lambda done: bar.update(task, completed=done),
                                       on_info=on_info, on_warning=on_warning)
        except _Stopped as stopped:
            err_console.print(f"[yellow]interrupted ({stopped})[/]", highlight=False, soft_wrap=True)
            raise typer.Exit(128 + stopped.number) from None
        if as_json:
            print_json(result.to_dict())
        elif not quiet:
            err_console.print(f"{result.frames} frames in {result.seconds:.1f} s -> {out}", highlight=False)
