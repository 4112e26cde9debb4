"""Stop signals (Ctrl-C, SIGTERM, SIGHUP), acted on where stopping is safe.

Python runs a signal handler in the main thread between two bytecodes, wherever that thread is.
A handler that raises can therefore raise inside PyAV's callbacks, which print the exception as
"ignored" and go on (the stop is lost), or half-way through a clean-up such as unlocking an
output folder (the clean-up is lost). So within :func:`at_safe_points`, the handler that
:func:`handle_stop_signals` installs only records the signal, and the long loops call
:func:`raise_if_stopped` where stopping is safe: between frames in the decode, model and encode
threads, between videos, before a commit. A second stop signal raises at once, to end a run that
waits on a pipe. Outside :func:`at_safe_points` the handler raises at once, as Python's own does.

The first signal stays recorded until :func:`handle_stop_signals` ends, so that a program exits
with 128 + its number even when no safe point came after it. Without :func:`handle_stop_signals`
(a Python program using the library) nothing is recorded and signals keep Python's behaviour.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""The signals that ask a run to stop: Ctrl-C, ``kill``/``timeout``, a closed terminal."""


class Stopped(KeyboardInterrupt):
    """A stop signal as an exception: a KeyboardInterrupt, so that every command cleans up as for Ctrl-C."""

    def __init__(self, number: int) -> None:
        self.signal = signal.Signals(number)
        super().__init__(self.signal.name)


_received: list[signal.Signals] = []
_safe_point_depth = 0


def _on_stop_signal(number: int, _frame: object) -> None:
    _received.append(signal.Signals(number))
    if _safe_point_depth == 0 or len(_received) > 1:
        raise Stopped(_received[0])


def first_stop() -> signal.Signals | None:
    """The first stop signal received within :func:`handle_stop_signals`, or None."""
    return _received[0] if _received else None


def raise_if_stopped() -> None:
    """Raise :class:`Stopped` when a stop signal has been received; call it where stopping is safe."""
    if _received:
        raise Stopped(_received[0])


@contextlib.contextmanager
def handle_stop_signals() -> Iterator[Callable[[], signal.Signals | None]]:
    """Within the block, stop signals are recorded and raise :class:`Stopped` (at safe points only
    within :func:`at_safe_points`); yields :func:`first_stop`. A signal ignored when the block begins
    (``nohup``, a background job's Ctrl-C) stays ignored. Call it in the main thread."""
    _received.clear()
    previous = {}
    for number in STOP_SIGNALS:
        if signal.getsignal(number) is not signal.SIG_IGN:
            previous[number] = signal.signal(number, _on_stop_signal)
    try:
        yield first_stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)


@contextlib.contextmanager
def at_safe_points() -> Iterator[None]:
    """Within the block, a first stop signal only is recorded, for :func:`raise_if_stopped` to act on."""
    global _safe_point_depth
    _safe_point_depth += 1
    try:
        yield
    finally:
        _safe_point_depth -= 1
