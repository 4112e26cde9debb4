"""Process-wide settings that make CPU inference faster.

PyTorch allocates CPU tensors with ``malloc``. glibc serves every block above its mmap
threshold (128 KiB to 32 MiB, adjusted at run time) with a fresh ``mmap`` and returns it to
the kernel on ``free``, so each large intermediate tensor of a frame is page-faulted in again
on first touch: about 190,000 page faults and 0.2 s per frame for HMHI-Net at 512x512 on two
cores. :func:`keep_freed_memory` makes glibc keep freed memory in the process for reuse
instead. The peak memory is unchanged (the same tensors are alive at the peak); the process
just does not give pages back between frames.

This changes the allocator of the whole process, so the library never calls it on its own:
the ``hmhi`` command does, and a Python user opts in by calling it once.

Threads: while a video streams, the model runs in the main thread on torch's OpenMP pool, with a
decode/flow thread and an encode thread beside it. The pool takes every core and its threads spin
while they wait for each other, which is fastest on a quiet machine; beside another busy program
a pool thread that loses its core holds up the others at every step, and the spinning ones take
the core the program and the other stages need. :func:`share_cores_between_stages` lets a
:class:`ThreadGovernor` size the pool to the cores the other programs leave free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_KEEP_FREE_TOP = 1 << 30
_PROC_STAT = Path("/proc/stat")
_PROC_CPUINFO = Path("/proc/cpuinfo")
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
"""CPU flags (``/proc/cpuinfo``) of the instructions that compute in bf16: AVX-512 BF16 and AMX."""


def keep_freed_memory() -> bool:
    """Keep freed heap memory for reuse (glibc only). Returns whether the setting took effect.

    Large blocks come from the heap instead of ``mmap`` (glibc still falls back to ``mmap``
    when the heap cannot grow), and up to 1 GiB of free memory at the top of the heap is kept
    instead of being trimmed after every frame.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_FREE_TOP))


def _affinity() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return os.sched_getaffinity(0)
    return set(range(os.cpu_count() or 1))


def busy_cpu_seconds(cpus: Iterable[int], niced: bool = False, stat: Path = _PROC_STAT) -> float:
    """Seconds the given CPUs have spent on work since boot, from ``/proc/stat``: all processes'
    (``niced``: those with a positive nice value too), interrupts, and time stolen by the hypervisor."""
    wanted = {f"cpu{cpu}" for cpu in cpus}
    ticks = 0
    for line in stat.read_text().splitlines():
        name, *fields = line.split()
        if name in wanted:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(field) for field in fields[:8])
            ticks += user + system + irq + softirq + steal + (nice if niced else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process, all its threads."""
    times = os.times()
    return times.user + times.system


class ThreadGovernor:
    """Keeps the model's thread count at the cores that other programs leave free.

    Every ``interval`` seconds it measures how many cores the other programs kept busy (the
    CPUs' busy time less this process's) and gives the model ``most`` threads less that many,
    rounded up from 0.4, at least one. On a quiet machine the model keeps every thread it would
    have. Programs with a higher nice value than this one's do not count when ``busy_seconds``
    leaves their time out: they yield the cores anyway. 40 frames at 480p with the default
    weights on two cores took 7.7 s quiet and 18.3 s beside one busy process with torch's two
    threads, 9.3 s beside it with one.
    """

    def __init__(self, most: int, busy_seconds: Callable[[], float], own_seconds: Callable[[], float] = own_cpu_seconds,
                 set_threads: Callable[[int], None] | None = None, clock: Callable[[], float] = time.monotonic,
                 interval: float = 0.5) -> None:
        import torch

        self.most = most
        self.threads = most
        self._busy_seconds, self._own_seconds, self._clock = busy_seconds, own_seconds, clock
        self._set_threads = set_threads or torch.set_num_threads
        self._interval = interval
        self._since, self._busy, self._own = clock(), busy_seconds(), own_seconds()
        self._set_threads(most)

    def update(self) -> int:
        """Call between the model's steps, in the thread that runs the model; returns its thread count."""
        now = self._clock()
        if now - self._since < self._interval:
            return self.threads
        busy, own = self._busy_seconds(), self._own_seconds()
        others = max(0.0, ((busy - self._busy) - (own - self._own)) / (now - self._since))
        self._since, self._busy, self._own = now, busy, own
        threads = max(1, self.most - math.floor(others + 0.6))
        if threads != self.threads:
            self._set_threads(threads)
            self.threads = threads
        return self.threads


_governor: ThreadGovernor | None = None


def share_cores_between_stages() -> None:
    """Share the cores between the stages of a streaming run and the other programs: OpenCV
    single-threaded (DIS flow, resizes), the model's threads sized by a :class:`ThreadGovernor`.

    OpenCV's own thread pool in the decode/flow thread only competes with the model: 40 frames at
    480p with the default weights took 4.9 s with OpenCV's pool and 4.4 s without (two cores).
    A thread count set with ``OMP_NUM_THREADS`` is kept, and so is torch's own where
    ``/proc/stat`` cannot be read. Process-wide, so the ``hmhi segment`` and ``hmhi eval``
    commands call it and the library does not.
    """
    import cv2

    global _governor
    cv2.setNumThreads(1)
    cpus = _affinity()
    if "OMP_NUM_THREADS" in os.environ:
        return
    niced = os.getpriority(os.PRIO_PROCESS, 0) > 0
    try:
        busy_cpu_seconds(cpus, niced)
    except (OSError, ValueError):
        return
    if _governor is None:
        _governor = ThreadGovernor(_torch_default_threads(), lambda: busy_cpu_seconds(cpus, niced))


def fit_threads_to_load() -> None:
    """Between two model steps: let the governor that :func:`share_cores_between_stages` started
    resize the model's threads (nothing when none was started, as in a library user's process)."""
    if _governor is not None:
        _governor.update()


@functools.cache
def _torch_default_threads() -> int:
    import torch

    return torch.get_num_threads()


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16(cpuinfo: Path = _PROC_CPUINFO) -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX), from the flags in ``cpuinfo``;
    without ``/proc/cpuinfo`` (not Linux), whether torch dispatches to AVX-512 kernels or better."""
    try:
        text = cpuinfo.read_text(encoding="ascii", errors="replace")
    except OSError:
        import torch

        return torch.backends.cpu.get_cpu_capability() not in ("DEFAULT", "NO AVX", "AVX2", "ZVECTOR", "VSX")
    flags = {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[-1].split()}
    return bool(flags & NATIVE_BF16_FLAGS)
