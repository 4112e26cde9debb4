"""``hmhi flow``: pre-compute the optical-flow images HMHI-Net reads, for whole datasets."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from hmhi_cli.cli.common import Device, FlowBackend, command_group, err_console, progress


class ImageFormat(str, Enum):
    jpg = "jpg"
    png = "png"


def precompute(
    root: Path = typer.Argument(..., help="Dataset root (DAVIS layout, or one folder per sequence)."),
    flow: FlowBackend = typer.Option(
        FlowBackend.auto, "--flow", help="Flow backend; auto = RAFT-large if its weights are here, else DIS."
    ),
    raft_weights: Optional[Path] = typer.Option(
        None, "--raft-weights", help="RAFT weights file (torchvision .pth or .safetensors).", dir_okay=False
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="Output root (default: the dataset root)."),
    image_format: ImageFormat = typer.Option(ImageFormat.jpg, "--format", help="Flow image format."),
    flo: bool = typer.Option(False, "--flo", help="Also write the raw flow as Middlebury .flo files."),
    shard: str = typer.Option("0/1", "--shard", help="Do only shard i of n (0-based), e.g. 0/4, to split work."),
    device: Device = typer.Option(Device.auto, "--device", help="Where RAFT runs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or notes on stderr."),
) -> None:
    """Write a flow image (frame t -> t+1; last frame -> t-1) for every frame; finished files are skipped."""
    from hmhi_cli import flow as flowlib
    from hmhi_cli.data.layouts import load_dataset

    shard_index, shard_count = flowlib.parse_shard(shard)
    sequences = flowlib.shard_sequences(load_dataset(root), shard_index, shard_count)
    estimator = flowlib.resolve_flow_backend(flow.value, raft_weights, device.value, allow_download=True)
    if not quiet:
        note = ""
        if flow is FlowBackend.auto and estimator.name == "dis":
            cached = flowlib.raft_cache_path("raft-large")
            note = f" (no RAFT-large weights at {cached}; --raft-weights FILE enables RAFT)"
        message = f"flow backend: {estimator.name} on {estimator.device}{note}"
        err_console.print(message, markup=False, highlight=False, soft_wrap=True)
    out_root = root if out is None else out

    with progress(quiet) as bars:
        overall = bars.add_task("all sequences", total=sum(len(sequence.frames) for sequence in sequences))
        current: dict[str, int] = {}

        def show(event: flowlib.FlowProgress) -> None:
            if event.done == 0:
                for task in current.values():
                    bars.remove_task(task)
                current.clear()
                current[event.sequence] = bars.add_task(event.sequence, total=event.total)
                return
            bars.update(current[event.sequence], completed=event.done)
            bars.advance(overall)

        summary = flowlib.precompute_flow(
            sequences,
            out_root,
            estimator,
            image_format=image_format.value,
            write_flo=flo,
            progress=show,
        )
    print(
        f"flow ({estimator.name}): {summary.computed} computed, {summary.skipped} skipped, "
        f"{summary.sequences} sequences (shard {shard_index}/{shard_count}) -> {out_root}"
    )


def register(app: typer.Typer) -> None:
    """Add the ``flow`` command group to ``app``."""
    flow_app = command_group("Optical flow as HMHI-Net expects it.")
    flow_app.command("precompute")(precompute)
    app.add_typer(flow_app, name="flow")
