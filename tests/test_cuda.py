"""The CUDA path (model in fp32, bf16 and fp16, pinned uploads, RAFT, training) against the CPU.

Marked ``cuda`` and skipped without a GPU; ``benchmarks/device_check.sh`` runs them
(``pytest -m cuda``). They use only files in this checkout (the sample clip, the default weights),
since a GPU machine has no ``../shared``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "sample.mp4"
FRAMES = 6
# Mean absolute soft-map difference from the CPU's fp32 run (probabilities) and mask IoU, per precision.
TOLERANCES = {"fp32": (0.01, 0.98), "bf16": (0.03, 0.93), "fp16": (0.01, 0.97)}

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def hmhi(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hmhi_cli", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """The sample's first frames as a short H.264 clip."""
    path = tmp_path_factory.mktemp("cuda") / "short.mp4"
    with av.open(str(SAMPLE)) as source, av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        for index, frame in enumerate(source.decode(video=0)):
            if index == FRAMES:
                break
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def segment(clip: Path, out: Path, device: str, precision: str) -> dict:
    result = hmhi("segment", str(clip), "-o", str(out), "--device", device, "--precision", precision,
                  "--flow", "dis", "--save", "masks,probs", "--json", "-q")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def read_folder(folder: Path) -> np.ndarray:
    return np.stack([cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) for path in sorted(folder.glob("*.png"))])


@pytest.fixture(scope="module")
def cpu_run(clip, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cpu") / "out"
    segment(clip, out, "cpu", "fp32")
    return out


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_segment_on_cuda_matches_the_cpu(clip, cpu_run, tmp_path, precision):
    summary = segment(clip, tmp_path / "out", "cuda", precision)
    assert summary["device"].startswith("cuda") and summary["precision"] == precision and summary["frames"] == FRAMES
    soft, soft_cpu = read_folder(tmp_path / "out" / "probs") / 255, read_folder(cpu_run / "probs") / 255
    masks, masks_cpu = read_folder(tmp_path / "out" / "masks") > 127, read_folder(cpu_run / "masks") > 127
    mean_abs, iou = TOLERANCES[precision]
    assert np.abs(soft - soft_cpu).mean() <= mean_abs
    union = (masks | masks_cpu).sum()
    assert union == 0 or (masks & masks_cpu).sum() / union >= iou


def test_raft_on_cuda_matches_the_cpu(tmp_path):
    from torchvision.models.optical_flow import raft_small

    from hmhi_cli.flow import RaftFlowEstimator

    torch.manual_seed(0)
    weights = tmp_path / "raft-small.pth"
    torch.save(raft_small(weights=None).state_dict(), weights)
    with av.open(str(SAMPLE)) as source:
        frames = [frame.to_ndarray(format="rgb24") for _, frame in zip(range(2), source.decode(video=0))]
    on_cpu = RaftFlowEstimator("raft-small", weights=weights, device="cpu").estimate(*frames)
    on_cuda = RaftFlowEstimator("raft-small", weights=weights, device="cuda").estimate(*frames)
    assert on_cuda.shape == on_cpu.shape == (360, 640, 2)
    assert np.abs(on_cuda - on_cpu).mean() <= 0.02 + 0.02 * np.abs(on_cpu).mean()


def test_training_runs_on_cuda(tmp_path):
    from hmhi_cli.training.trainer import Trainer, TrainConfig

    config = TrainConfig(out_dir=tmp_path / "library", encoder="mit_b0", size=64, clip_length=2, batch_size=1,
                         steps=1, synthetic_fraction=1.0, checkpoint_every=1)
    assert Trainer(config).device.type == "cuda"
    result = hmhi("train", "--out", str(tmp_path / "run"), "--encoder", "mit_b0", "--size", "64", "--clip-length", "2",
                  "--batch-size", "1", "--synthetic", "1.0", "--steps", "2", "--checkpoint-every", "2")
    assert result.returncode == 0, result.stderr
    assert "finished at step 2" in result.stderr
