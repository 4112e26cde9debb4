"""``hmhi segment IN -o -``: one lossless video on stdout, read back by real consumers (PyAV, ffmpeg)."""

from __future__ import annotations

import io
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from test_segment import DAVIS, FRAMES, HEIGHT, WIDTH, clip, one_line_error, run, tiny_weights, video_timestamps  # noqa: F401

pytestmark = pytest.mark.skipif(not DAVIS.exists(), reason="../shared/davis16-dev absent")


def segment_args(clip: Path, weights: Path, *more: str) -> list[str]:
    return [sys.executable, "-m", "hmhi_cli", "segment", str(clip), "-o", "-", "--weights", str(weights),
            "--flow", "dis", *more]


def decode(data: bytes) -> tuple[list[av.VideoFrame], str]:
    """Every frame of a Matroska stream read from memory, and the codec of its video."""
    with av.open(io.BytesIO(data)) as container:
        return list(container.decode(video=0)), container.streams.video[0].codec_context.name


def read_png(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_alpha_and_mask_streams_carry_the_exact_maps_and_the_source_timing(clip, tiny_weights, tmp_path):
    folder = tmp_path / "out"
    reference = run("segment", str(clip), "-o", str(folder), "--weights", str(tiny_weights), "--flow", "dis",
                    "--save", "masks,alpha", "-q")
    assert reference.returncode == 0, reference.stderr.decode()

    alpha = subprocess.run(segment_args(clip, tiny_weights, "--save", "alpha", "-q"), capture_output=True, timeout=600)
    assert alpha.returncode == 0 and alpha.stderr == b"", alpha.stderr.decode()
    frames, codec = decode(alpha.stdout)
    assert codec == "ffv1" and len(frames) == FRAMES
    assert {(frame.width, frame.height, frame.format.name) for frame in frames} == {(WIDTH, HEIGHT, "bgra")}
    assert [float(frame.pts * frame.time_base) for frame in frames] == pytest.approx(video_timestamps(clip), abs=1e-3)
    with av.open(str(clip)) as container:
        source_rgb = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    for index, frame in enumerate(frames):
        rgba = frame.to_ndarray(format="rgba")
        matte = read_png(folder / "alpha" / f"{index:05d}.png")[..., 3]
        assert np.abs(rgba[..., 3].astype(int) - matte).max() <= 1, index
        assert np.abs(rgba[..., :3].astype(int) - source_rgb[index]).max() <= 2, index

    mask = subprocess.run(segment_args(clip, tiny_weights), capture_output=True, timeout=600)
    assert mask.returncode == 0, mask.stderr.decode()
    assert "weights tiny.safetensors" in mask.stderr.decode(), "notes go to stderr, the video alone to stdout"
    frames, _ = decode(mask.stdout)
    assert len(frames) == FRAMES and frames[0].format.name == "gray"
    for index, frame in enumerate(frames):
        expected = read_png(folder / "masks" / f"{index:05d}.png")
        assert (frame.to_ndarray() != expected).mean() < 1e-3, index


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_ffmpeg_makes_a_prores_4444_cutout_from_the_pipe(clip, tiny_weights, tmp_path):
    target = tmp_path / "cutout.mov"
    producer = subprocess.Popen(segment_args(clip, tiny_weights, "--save", "alpha", "-q"), stdout=subprocess.PIPE)
    consumer = subprocess.run(["ffmpeg", "-v", "error", "-i", "-", "-fps_mode", "passthrough", "-c:v", "prores_ks",
                               "-profile:v", "4444", "-pix_fmt", "yuva444p10le", str(target)],
                              stdin=producer.stdout, capture_output=True, timeout=600)
    producer.stdout.close()
    assert producer.wait(timeout=600) == 0
    assert consumer.returncode == 0, consumer.stderr.decode()
    with av.open(str(target)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == FRAMES and frames[0].format.name.startswith("yuva")


def test_a_closed_pipe_ends_the_run_quietly_with_141(clip, tiny_weights):
    process = subprocess.Popen(segment_args(clip, tiny_weights, "--save", "alpha", "-q"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before the first byte, as with `| head -c 0`
    stderr = process.stderr.read()
    assert process.wait(timeout=600) == 141
    assert stderr == b"", stderr.decode()


def test_what_cannot_be_streamed_is_refused_in_one_line(clip, tiny_weights):
    cases = [
        (("--save", "alpha,overlay"), "-o - streams one video: choose one of"),
        (("--json",), "--json prints on stdout"),
        ((str(clip),), "give one input"),
        (("--shard", "1/2"), "--shard splits a batch"),
    ]
    for extra, expected in cases:
        result = subprocess.run(segment_args(clip, tiny_weights, *extra), capture_output=True, timeout=600)
        message = one_line_error(result)
        assert result.returncode == 2 and expected in message and result.stdout == b"", (extra, message)
    terminal, other_end = pty.openpty()
    try:
        result = subprocess.run(segment_args(clip, tiny_weights), stdout=other_end, stderr=subprocess.PIPE, timeout=600)
    finally:
        os.close(terminal)
        os.close(other_end)
    message = one_line_error(result)
    assert result.returncode == 2 and "stdout, which is a terminal" in message, message
