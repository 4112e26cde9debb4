"""The allocator setting: freed memory is reused without page faults."""

from __future__ import annotations

import subprocess
import sys

import pytest

FAULTS_PER_ALLOCATION = """
import resource, sys
import torch
from hmhi_cli.runtime import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
faults = []
for _ in range(16):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(16 * 2**20).fill_(1.0)  # 64 MiB, freed at once
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[-4:]) // 4)  # steady state, once the heap has grown to fit
"""


def faults_per_allocation(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", FAULTS_PER_ALLOCATION, mode], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc setting")
def test_freed_memory_is_reused_without_page_faults():
    pages = 64 * 2**20 // 4096
    assert faults_per_allocation("default") > pages // 2
    assert faults_per_allocation("keep") < pages // 100


def test_opencv_leaves_the_cores_to_the_model():
    code = ("import cv2; from hmhi_cli.runtime import leave_cores_to_the_model; before = cv2.getNumThreads(); "
            "leave_cores_to_the_model(); print(before, cv2.getNumThreads())")
    before, after = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(after) == 1 and int(before) >= 1
