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
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_KEEP_FREE_TOP = 1 << 30


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


def leave_cores_to_the_model() -> None:
    """Run OpenCV single-threaded (DIS flow, resizes).

    While a video is segmented the model already keeps every core busy, and OpenCV's own
    thread pool in the decode/flow thread only competes with it: 40 frames at 480p with the
    default weights took 4.9 s with OpenCV's pool and 4.4 s without (two cores). Process-wide,
    so the ``hmhi segment`` and ``hmhi eval`` commands call it and the library does not.
    """
    import cv2

    cv2.setNumThreads(1)
