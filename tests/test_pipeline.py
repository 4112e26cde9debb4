"""The threads that overlap decoding, the model and encoding."""

from __future__ import annotations

import threading
import time

import pytest

from hmhi_cli.pipeline import Worker, run_ahead


def test_run_ahead_keeps_order_and_is_bounded():
    produced = []

    def numbers():
        for i in range(50):
            produced.append(i)
            yield i

    iterator = run_ahead(numbers(), depth=3)
    assert next(iterator) == 0
    time.sleep(0.3)
    assert len(produced) <= 1 + 3 + 1, "the producer runs at most depth items ahead"
    assert list(iterator) == list(range(1, 50))


def test_run_ahead_reraises_producer_errors():
    def broken():
        yield 1
        raise ValueError("decode failed at frame 1")

    iterator = run_ahead(broken())
    assert next(iterator) == 1
    with pytest.raises(ValueError, match="frame 1"):
        next(iterator)


def test_run_ahead_stops_its_thread_when_the_consumer_stops():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    before = threading.active_count()
    iterator = run_ahead(endless(), depth=2)
    next(iterator)
    iterator.close()
    assert threading.active_count() == before


def test_worker_handles_everything_in_order():
    seen = []
    with Worker(seen.append, depth=2) as worker:
        for i in range(20):
            worker.submit(i)
    assert seen == list(range(20))


def test_worker_failure_reaches_the_caller():
    def handle(item):
        if item == 3:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        with Worker(handle, depth=1) as worker:
            for i in range(100):
                worker.submit(i)


def test_worker_stops_after_an_error_in_the_caller():
    handled = []

    def slow(item):
        time.sleep(0.05)
        handled.append(item)

    with pytest.raises(KeyboardInterrupt):
        with Worker(slow, depth=10) as worker:
            for i in range(10):
                worker.submit(i)
            raise KeyboardInterrupt
    assert len(handled) < 10, "pending items are dropped, not finished"
