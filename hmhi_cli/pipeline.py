"""Overlap the stages of a streaming run: a producer thread ahead of the main thread, and a
consumer thread behind it, each with a bounded queue so memory stays bounded.

Decoding, OpenCV flow, PyTorch kernels and FFmpeg encoding release the GIL, so these threads
run truly in parallel with the model. Errors in a thread are re-raised in the main thread; an
error or Ctrl-C in the main thread stops the threads. Every thread stops between two items once a
stop signal has been received (:func:`hmhi_cli.interrupt.raise_if_stopped`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from hmhi_cli.interrupt import raise_if_stopped

T = TypeVar("T")
POLL_SECONDS = 0.1
_DONE = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def _put(items: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put ``item`` unless ``stop`` is set first; return whether it was put."""
    while not stop.is_set():
        try:
            items.put(item, timeout=POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def _get(items: queue.Queue) -> object:
    """The next item; a stop signal received meanwhile raises."""
    while True:
        raise_if_stopped()
        try:
            return items.get(timeout=POLL_SECONDS)
        except queue.Empty:
            continue


def run_ahead(iterable: Iterable[T], depth: int = 4, name: str = "producer") -> Iterator[T]:
    """Iterate ``iterable`` in a background thread, up to ``depth`` items ahead of the caller."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in iterable:
                raise_if_stopped()
                if not _put(items, item, stop):
                    return
            _put(items, _DONE, stop)
        except BaseException as error:  # handed to the consumer, which re-raises it
            _put(items, _Failure(error), stop)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = _get(items)
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


class Worker(Generic[T]):
    """Calls ``handle(item)`` for each submitted item in a background thread, in order.

    Use as a context manager: a clean exit waits for every item to be handled (and re-raises a
    failure); an exception exit stops the thread after the item in hand.
    """

    def __init__(self, handle: Callable[[T], None], depth: int = 4, name: str = "consumer"):
        self._handle = handle
        self._items: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._consume, name=name, daemon=True)

    def _consume(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._items.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            if item is _DONE or self._stop.is_set():
                return
            try:
                raise_if_stopped()
                self._handle(item)
            except BaseException as error:  # re-raised by submit() or __exit__ in the caller's thread
                self._error = error
                self._stop.set()
                return

    def submit(self, item: T) -> None:
        self._raise_failure()
        while not _put(self._items, item, self._stop):
            self._raise_failure()

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def __enter__(self) -> Worker[T]:
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc is None:
            _put(self._items, _DONE, self._stop)
        else:
            self._stop.set()
        self._thread.join()
        if exc is None:
            self._raise_failure()
