"""``hmhi weights convert``, ``hmhi weights average`` and ``hmhi weights info``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from hmhi_cli.cli.common import command_group, err_console, out_console, print_json
from hmhi_cli.errors import OutputError, WeightsError

group = command_group("Inspect, convert and average model weights.")


@group.command("convert")
def convert_command(
    source: Path = typer.Argument(..., help="Published HMHI-Net checkpoint (.pth) or any loadable weights."),
    target: Path = typer.Argument(..., help="Output .safetensors file."),
    size: int = typer.Option(None, "--size", help="Input size to record (default: the source's, 512 for published)."),
    memory_limit: int = typer.Option(None, "--memory-limit", help="Memory limit to record (default: the source's)."),
    flow_max_side: int = typer.Option(None, "--flow-max-side", min=32,
                                      help="DIS working size to record (default: the source's; none: full frames)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace TARGET if it exists."),
) -> None:
    """Convert weights into hmhi's safetensors format (strict check against the model)."""
    from hmhi_cli import weights as weights_lib

    _refuse_to_replace(target, overwrite)
    info = weights_lib.convert(source, target, input_size=size, memory_limit=memory_limit, flow_max_side=flow_max_side)
    flow_note = f", DIS flow at {info.flow_max_side} px" if info.flow_max_side else ""
    err_console.print(f"wrote {target} ({info.encoder}, input {info.input_size}, memory limit {info.memory_limit}{flow_note})",
                      markup=False, highlight=False)


@group.command("average")
def average_command(
    sources: List[Path] = typer.Argument(..., help="Two or more weights files of one network (checkpoints of a run).",
                                         show_default=False),
    target: Path = typer.Option(..., "--out", "-o", help="Output .safetensors file.", show_default=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output if it exists."),
) -> None:
    """Average weights files of one network (the same encoder, input size, memory limit and flow
    size) into one, e.g. a weight average of a run's last checkpoints."""
    from hmhi_cli import weights as weights_lib

    _refuse_to_replace(target, overwrite)
    if any(target.resolve() == source.resolve() for source in sources):
        raise OutputError(f"{target}: is one of the files to average; write the average elsewhere")
    info = weights_lib.average_weights(sources, target)
    err_console.print(f"wrote {target}: the average of {len(sources)} files ({info.encoder}, input {info.input_size})",
                      markup=False, highlight=False)


@group.command("info")
def info_command(
    path: Optional[Path] = typer.Argument(None, help="A weights file (default: the embedded weights).",
                                          show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    """Show what a weights file holds: encoder family and widths, input size, memory limit, flow, provenance.
    Without a path: the default weights (the embedded ones, or $HMHI_WEIGHTS)."""
    from hmhi_cli import weights as weights_lib

    default = path is None
    if default:
        path = weights_lib.default_weights_path()
        if not path.is_file():
            raise WeightsError(f"no trained weights are present ({path} is missing); give a weights file")
    state, _ = weights_lib.read_state_dict(path)
    info = weights_lib.describe(path)
    details = {"default": default} | info.to_dict() | {
        "path": str(path),
        "tensors": len(state),
        "parameters": int(sum(t.numel() for t in state.values())),
        "bytes": path.stat().st_size,
    }
    if as_json:
        print_json(details)
        return
    table = Table(show_header=False, box=None)
    table.add_row("[bold]weights", escape(_which(path, default)))
    for key, value in details.items():
        if key != "default":
            table.add_row(f"[bold]{key}", escape(str(value)))
    out_console.print(table)


def _refuse_to_replace(target: Path, overwrite: bool) -> None:
    """An OutputError when ``target`` exists and ``--overwrite`` was not given."""
    if target.exists() and not overwrite:
        raise OutputError(f"{target}: already exists (use --overwrite to replace it)")


def _which(path: Path, default: bool) -> str:
    """Which weights these are, in words."""
    if not default:
        return path.name
    if os.environ.get("HMHI_WEIGHTS"):
        return f"the default: {path.name} (from $HMHI_WEIGHTS)"
    return f"the default: {path.name} (embedded in hmhi)"


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="weights")
