"""The rest of issue 18's faults, through the real ``hmhi`` command line: writes that fail, tiny
frames, a corrupt Matroska middle, a report cut by Ctrl-C, damaged checkpoints, seeded training."""

from __future__ import annotations

import subprocess
import sys

import av
import cv2
import numpy as np
import pytest
from test_flow import REPO, reference_dataset
from test_segment import DAVIS, make_clip, one_line_error, run, tiny_weights  # noqa: F401


def limit_file_size_to_100_bytes() -> None:
    """In a child process: a file that grows past 100 bytes fails to write, as on a full disk."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))


def test_flow_images_that_cannot_be_written_are_one_line_with_exit_1(tmp_path):
    root = reference_dataset(tmp_path / "data", 2)
    result = subprocess.run([sys.executable, "-m", "hmhi_cli", "flow", "precompute", str(root), "--flow", "dis", "-q"],
                            capture_output=True, text=True, cwd=REPO, timeout=300,
                            preexec_fn=limit_file_size_to_100_bytes)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr, result.stderr
    assert "cannot write" in result.stderr and "File too large" in result.stderr, result.stderr
    assert not list((root / "clip" / "flow").iterdir()), "no partial flow image is left"


@pytest.mark.skipif(not DAVIS.exists(), reason="../shared/davis16-dev absent")
def test_frames_smaller_than_dis_takes_are_segmented_at_their_own_size(tiny_weights, tmp_path):
    sizes = {"one": (1, 1), "eight": (8, 8), "strip": (12, 2)}  # width, height
    for name, (width, height) in sizes.items():
        (tmp_path / name).mkdir()
        for index in range(3):
            cv2.imwrite(str(tmp_path / name / f"{index:05d}.png"), np.full((height, width, 3), 60 * index, np.uint8))
    out = tmp_path / "out"
    result = run("segment", *(str(tmp_path / name) for name in sizes), "-o", str(out), "--weights", str(tiny_weights),
                 "--flow", "dis", "--save", "masks,mask-video,overlay")
    assert result.returncode == 0, result.stderr.decode()
    for name, (width, height) in sizes.items():
        masks = sorted((out / name / "masks").glob("*.png"))
        assert [cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).shape for path in masks] == [(height, width)] * 3, name
        for video in ("mask.mp4", "overlay.mp4"):
            with av.open(str(out / name / video)) as container:
                assert [(frame.width, frame.height) for frame in container.decode(video=0)] == [(width, height)] * 3


@pytest.mark.skipif(not DAVIS.exists(), reason="../shared/davis16-dev absent")
def test_a_matroska_file_with_a_corrupt_middle_is_refused_as_truncated_ones_are(tiny_weights, tmp_path):
    clip = make_clip(tmp_path / "clip.mkv", frames=20)
    with av.open(str(clip)) as container:
        seventh_block = [packet.pos for packet in container.demux(video=0) if packet.size][6]
    data = bytearray(clip.read_bytes())
    for offset in range(seventh_block, seventh_block + 90):  # the demuxer stops there, as at the end of a file
        data[offset] ^= 0xFF
    corrupt = tmp_path / "corrupt.mkv"
    corrupt.write_bytes(bytes(data))
    out = tmp_path / "out"
    result = run("segment", str(corrupt), "-o", str(out), "--weights", str(tiny_weights), "--flow", "dis", "-q")
    message = one_line_error(result)
    assert result.returncode == 2, message
    assert message == (f"error: {corrupt}: the file is corrupt or truncated: 6 frames decoded, ending at 0.240 s "
                       "of the 0.800 s it states"), message
    assert not out.exists()
