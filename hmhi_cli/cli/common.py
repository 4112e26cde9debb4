"""Shared pieces of the CLI: consoles, progress bars and progress lines, JSON output, help display."""

from __future__ import annotations

import json
import sys
import threading
from datetime import timedelta
from enum import Enum
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
)
from rich.text import Text
from typer.core import TyperGroup

from hmhi_cli.errors import OutputError

PLAIN_PROGRESS_INTERVAL_S = 10.0


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


err_console = Console(stderr=True, emoji=False)
out_console = Console(emoji=False)
"""Markup is ours only: every user-supplied string printed through these consoles is escaped
(:func:`rich.markup.escape`) or printed with ``markup=False``; emoji codes (``:repeat:``) are never replaced."""


def progress(quiet: bool = False) -> Progress:
    """Progress on stderr: live bars on a terminal, a plain line per task every
    :data:`PLAIN_PROGRESS_INTERVAL_S` seconds otherwise (logs, CI), nothing when ``quiet``."""
    if not quiet and not err_console.is_terminal:
        return _LogProgress()
    return Progress(
        TextColumn("{task.description}", style="bold", markup=False),  # descriptions name inputs
        BarColumn(),
        MofNCompleteColumn(),
        ElapsedColumn(),
        RemainingColumn(),
        RateColumn(),
        console=err_console,
        disable=quiet,
        transient=False,
    )


def clock(seconds: float | None) -> str:
    """``seconds`` as ``m:ss`` or ``h:mm:ss``; ``-:--`` when unknown."""
    if seconds is None:
        return "-:--"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ElapsedColumn(ProgressColumn):
    """``elapsed 0:12``: time since the task started."""

    def render(self, task: Task) -> Text:
        return Text(f"elapsed {clock(task.finished_time if task.finished else task.elapsed or 0)}",
                    style="progress.elapsed")


class RemainingColumn(ProgressColumn):
    """``left 0:30``: the time still to go, from the recent rate; ``-:--`` until it is known."""

    max_refresh = 0.5

    def render(self, task: Task) -> Text:
        return Text(f"left {clock(0 if task.finished else task.time_remaining)}", style="progress.remaining")


class RateColumn(ProgressColumn):
    """``14.2 fps``: items per second over the recent past, in the task's ``unit`` field (default ``/s``)."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "/s")
        speed = task.finished_speed or task.speed
        space = "" if unit.startswith("/") else " "
        return Text("" if speed is None else f"{speed:.1f}{space}{unit}", style="progress.data.speed")


def show_step(bar: Progress, task: int, description: str) -> None:
    """Name the step ``task`` is in now (``finishing mask.mp4…``); without a live display
    (logs, CI), as a line of its own."""
    bar.update(task, description=description)
    if isinstance(bar, _LogProgress):
        err_console.print(description, markup=False, highlight=False, soft_wrap=True)


class _LogProgress(Progress):
    """Progress without a live display: a background thread prints one line per unfinished task
    every :data:`PLAIN_PROGRESS_INTERVAL_S` seconds while the progress is started."""

    def __init__(self) -> None:
        super().__init__(console=err_console, disable=True)
        self._stopped = threading.Event()
        self._reporter = threading.Thread(target=self._report_until_stopped, name="hmhi-progress", daemon=True)

    def start(self) -> None:
        super().start()
        self._reporter.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._reporter.is_alive():
            self._reporter.join()
        super().stop()

    def _report_until_stopped(self) -> None:
        while not self._stopped.wait(PLAIN_PROGRESS_INTERVAL_S):
            for task in self.tasks:
                if task.visible and not task.finished:
                    err_console.print(progress_line(task), markup=False, highlight=False, soft_wrap=True)


def progress_line(task: Task) -> str:
    """``description: done/total (rate/s, ETA h:mm:ss)``; total, rate and ETA only once known."""
    done = f"{task.completed:.0f}" if task.total is None else f"{task.completed:.0f}/{task.total:.0f}"
    speed = task.speed
    if not speed:
        return f"{task.description}: {done}"
    eta = task.time_remaining
    rate = f"{speed:.1f}/s" if eta is None else f"{speed:.1f}/s, ETA {timedelta(seconds=eta)}"
    return f"{task.description}: {done} ({rate})"


class HelpWhenBare(TyperGroup):
    """A command group that, run without a command, prints its help and exits 0 (Typer exits 2)."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            typer.echo(ctx.get_help(), nl=False)
            ctx.exit(0)
        return super().parse_args(ctx, args)


def command_group(help: str, **settings: Any) -> typer.Typer:
    """A Typer command group whose help prints every text exactly as written: click's plain help,
    without Rich markup or emoji codes (``[train]`` and ``ROOT:REPEAT:`` would not survive them)."""
    return typer.Typer(help=help, cls=HelpWhenBare, no_args_is_help=True, rich_markup_mode=None, **settings)


def check_stdout_open(purpose: str) -> None:
    """Raise :class:`OutputError` when stdout is closed (``>&-``), before any work is done for ``purpose``."""
    if sys.stdout is None:
        raise OutputError(f"stdout is closed (>&-), so {purpose} has nowhere to go: redirect it to a file instead")


def printable(text: str) -> str:
    """``text`` for one line of a terminal: each character that cannot be printed (a newline in a
    file name, an escape sequence) written as its Python escape, ``\\n``, ``\\x1b``..."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


def print_json(data: Any) -> None:
    """Write ``data`` as one JSON document on stdout, for scripts."""
    check_stdout_open("the JSON")
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()
