"""Process-wide settings: freed memory is reused without page faults; the streaming commands share the
cores between the model, the other stages and the other programs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from hmhi_cli import runtime
from hmhi_cli.flow import DisFlowEstimator
from hmhi_cli.inference import Segmenter
from hmhi_cli.model import build_model
from hmhi_cli.weights import save_weights

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
    code = ("import cv2; from hmhi_cli.runtime import share_cores_between_stages; before = cv2.getNumThreads(); "
            "share_cores_between_stages(); print(before, cv2.getNumThreads())")
    before, after = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(after) == 1 and int(before) >= 1


def test_busy_time_of_the_given_cpus(tmp_path):
    stat = tmp_path / "stat"
    #                 user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  900 900 900 900 900 900 900 900 0 0\n"
                    "cpu0 100 1000 20 5000 7 3 2 5 0 0\n"
                    "cpu1 200 0 30 4000 9 0 0 0 0 0\n"
                    "cpu2 999 0 0 0 0 0 0 0 0 0\n"
                    "intr 1 2 3\n")
    ticks = os.sysconf("SC_CLK_TCK")
    assert runtime.busy_cpu_seconds({0, 1}, stat=stat) == pytest.approx((130 + 230) / ticks)
    assert runtime.busy_cpu_seconds({0, 1}, niced=True, stat=stat) == pytest.approx((1130 + 230) / ticks)
    assert runtime.busy_cpu_seconds({1}, stat=stat) == pytest.approx(230 / ticks)


class Machine:
    """A clock and CPU counters that a test advances: this process's work and the other programs'."""

    def __init__(self):
        self.now = self.busy = self.own = 0.0
        self.thread_counts: list[int] = []

    def run(self, seconds: float, own_cores: float, other_cores: float) -> None:
        self.now += seconds
        self.own += own_cores * seconds
        self.busy += (own_cores + other_cores) * seconds

    def governor(self, most: int) -> runtime.ThreadGovernor:
        return runtime.ThreadGovernor(most, lambda: self.busy, lambda: self.own, self.thread_counts.append,
                                      lambda: self.now, interval=0.5)


def test_the_model_gets_the_cores_the_other_programs_leave():
    machine = Machine()
    governor = machine.governor(2)
    assert machine.thread_counts == [2]
    machine.run(0.6, own_cores=1.6, other_cores=1.0)  # one busy program
    assert governor.update() == 1
    machine.run(0.6, own_cores=1.0, other_cores=0.9)
    assert governor.update() == 1
    machine.run(0.6, own_cores=1.0, other_cores=0.05)  # it ended
    assert governor.update() == 2
    machine.run(0.6, own_cores=1.5, other_cores=0.45)  # from 0.4 cores on, a program counts
    assert governor.update() == 1
    machine.run(0.6, own_cores=1.5, other_cores=0.3)
    assert governor.update() == 2
    machine.run(0.6, own_cores=0.5, other_cores=3.0)  # never fewer than one
    assert governor.update() == 1
    assert machine.thread_counts == [2, 1, 2, 1, 2, 1]  # set only on a change


def test_the_governor_measures_over_its_interval():
    machine = Machine()
    governor = machine.governor(8)
    machine.run(0.2, own_cores=8.0, other_cores=5.0)
    assert governor.update() == 8  # too soon: no change
    machine.run(0.4, own_cores=3.0, other_cores=0.0)  # others: 1.7 cores on average over the 0.6 s
    assert governor.update() == 6
    assert machine.thread_counts == [8, 6]


def test_the_model_loop_asks_the_governor_between_frames(monkeypatch):
    machine = Machine()
    governor = machine.governor(2)
    steps = []
    monkeypatch.setattr(runtime, "_governor", governor)
    monkeypatch.setattr(governor, "update", lambda: steps.append(len(steps)) or runtime.ThreadGovernor.update(governor))
    torch.manual_seed(0)
    segmenter = Segmenter(build_model("mit_b0"), DisFlowEstimator(), 64)
    frames = [np.full((48, 64, 3), 60 * index, np.uint8) for index in range(3)]
    results = list(segmenter.run(segmenter.pairs(frames)))
    assert len(results) == 3 and steps == [0, 1, 2]


# The real command line, then whether it left a governor and the model's thread count.
CLI_THEN_THREADS = """
import sys
from hmhi_cli import runtime
from hmhi_cli.cli import main
sys.argv = ["hmhi", *sys.argv[1:]]
try:
    main()
finally:
    import torch
    print("governor", runtime._governor is not None, "threads", torch.get_num_threads())
"""


@pytest.fixture(scope="module")
def moving_square(tmp_path_factory) -> tuple[Path, Path]:
    """A 4-frame 64x48 clip of a square moving right, and tiny random weights (S=64)."""
    folder = tmp_path_factory.mktemp("runtime")
    clip = folder / "square.mp4"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(4):
            rgb = np.full((48, 64, 3), 40, np.uint8)
            rgb[14:34, 8 + 6 * index:28 + 6 * index] = 220
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    torch.manual_seed(0)
    weights = folder / "tiny.safetensors"
    save_weights(build_model("mit_b0"), weights, input_size=64, provenance={"purpose": "tests"})
    return clip, weights


def segment_and_report_threads(moving_square, out: Path, **variables: str) -> str:
    clip, weights = moving_square
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    result = subprocess.run([sys.executable, "-c", CLI_THEN_THREADS, "segment", str(clip), "-o", str(out),
                             "--weights", str(weights), "--flow", "dis", "-q"], capture_output=True, text=True,
                            timeout=300, env={**env, **variables})
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="the governor reads /proc/stat")
def test_segment_sizes_the_model_threads_to_the_load(moving_square, tmp_path):
    report = segment_and_report_threads(moving_square, tmp_path / "out").split()
    assert report[:2] == ["governor", "True"]
    default = int(subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                                 capture_output=True, text=True, check=True).stdout)
    assert 1 <= int(report[3]) <= default


def test_a_thread_count_from_the_environment_is_kept(moving_square, tmp_path):
    assert segment_and_report_threads(moving_square, tmp_path / "out", OMP_NUM_THREADS="2").split() == [
        "governor", "False", "threads", "2"]
