"""The ``hmhi`` command line: a thin layer over the library API.

Each command group lives in its own module and registers itself on :data:`app`.
User errors (:class:`hmhi_cli.errors.HmhiError`) become one line on stderr and a non-zero
exit code. Ctrl-C, SIGTERM (``kill``, ``timeout``, a scheduler ending a job) and SIGHUP (terminal
closed) stop every command the same way, after its own clean-up, with exit 130, 143 and 129.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import NoReturn

import typer
from rich.markup import escape

from hmhi_cli import __version__
from hmhi_cli.cli.common import command_group, err_console, printable
from hmhi_cli.errors import HmhiError
from hmhi_cli.interrupt import handle_stop_signals
from hmhi_cli.runtime import keep_freed_memory

app = command_group(
    "Find and cut out the main moving object of any video (HMHI-Net, no clicks, no first-frame mask).",
    name="hmhi",
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(requested: bool) -> None:
    if requested:
        typer.echo(f"hmhi {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
    ),
) -> None:
    """Options that come before the command."""


def _register_commands() -> None:
    from hmhi_cli.cli import eval, flow, info, label, segment, train, weights

    for module in (segment, eval, flow, train, label, weights, info):
        module.register(app)


_register_commands()


INTERRUPTED = 130


def main() -> None:
    """Console-script entry point."""
    keep_freed_memory()
    with handle_stop_signals() as stopped_by:
        try:
            # Non-standalone mode returns the exit code of typer.Exit, and of Ctrl-C, SIGTERM and SIGHUP (130).
            exit_code = app(standalone_mode=False)
        except HmhiError as exc:
            err_console.print(f"[bold red]error:[/] {escape(printable(str(exc)))}", highlight=False, soft_wrap=True)
            exit_code = exc.exit_code
        except typer.Abort:
            err_console.print("[yellow]aborted[/]")
            exit_code = INTERRUPTED
        except typer.exceptions.TyperException as exc:  # usage errors: bad option, missing argument
            err_console.print(_usage_error_line(exc), markup=False, highlight=False, soft_wrap=True)
            exit_code = exc.exit_code
        stop = stopped_by()
    if stop is not None:  # however the command ended, a stop signal it received decides the exit code
        err_console.print(f"[yellow]interrupted ({stop.name})[/]", highlight=False)
        sys.exit(128 + stop)
    if exit_code == INTERRUPTED:
        err_console.print("[yellow]interrupted[/]")
    if isinstance(exit_code, int) and exit_code:
        sys.exit(exit_code)


def _usage_error_line(error: typer.exceptions.TyperException) -> str:
    """``error: MESSAGE (see hmhi segment --help)``: one line, where Click prints the usage, a hint and the message."""
    context = getattr(error, "ctx", None)
    hint = f" (see {context.command_path} --help)" if context is not None else ""
    return f"error: {' '.join(error.format_message().split())}{hint}"


def run() -> NoReturn:
    """The ``hmhi`` program: :func:`main`, then leave without the interpreter's teardown.

    By the time the command returns every output is closed and committed, its threads joined
    and its locks released; what is left is Python freeing torch's modules one by one, about
    0.4 s of a 4 s ``hmhi segment`` run on two cores. Python callers use :func:`main`.
    """
    try:
        main()
        code = 0
    except SystemExit as exc:
        if isinstance(exc.code, int) or exc.code is None:
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
