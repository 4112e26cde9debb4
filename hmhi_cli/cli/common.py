"""Shared pieces of the CLI: consoles, progress bars, JSON output."""

from __future__ import annotations

import json
import sys
from enum import Enum
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class FlowBackend(str, Enum):
    """Optical-flow backends offered by every command that computes flow."""

    auto = "auto"
    raft_large = "raft-large"
    raft_small = "raft-small"
    dis = "dis"


class Precision(str, Enum):
    """Arithmetic of the model: fp32, or mixed bf16 (CPU or CUDA) / fp16 (CUDA)."""

    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


err_console = Console(stderr=True)
out_console = Console()


def progress(quiet: bool = False) -> Progress:
    """A progress display on stderr; hidden when ``quiet`` or when stderr is not a terminal."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=quiet or not err_console.is_terminal,
        transient=False,
    )


def print_json(data: Any) -> None:
    """Write ``data`` as one JSON document on stdout, for scripts."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()
