"""``hmhi segment -``: videos piped on stdin get the same verdict as the same files given as paths."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from test_segment import one_line_error, tiny_weights  # noqa: F401  (tiny_weights: the shared fixture)

FRAMES = 6
WIDTH, HEIGHT = 128, 96


def noise_clip(path: Path, container_format: str, codec: str, options: dict[str, str] | None = None) -> Path:
    """Lossless noise frames: the media data (~100 KB) is far larger than what FFmpeg buffers while probing."""
    with av.open(str(path), "w", format=container_format, options=options or {}) as container:
        stream = container.add_stream(codec, rate=25, options={"qp": "0"} if codec == "libx264" else {"lossless": "1"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for index in range(FRAMES):
            noise = np.random.default_rng(index).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(noise, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "index last": noise_clip(folder / "camera.mp4", "mp4", "libx264"),
        "index first": noise_clip(folder / "faststart.mp4", "mp4", "libx264", {"movflags": "+faststart"}),
        "webm": noise_clip(folder / "clip.webm", "webm", "libvpx-vp9"),
    }


def first_half(clip: Path, folder: Path) -> Path:
    data = clip.read_bytes()
    cut = folder / f"half-{clip.name}"
    cut.write_bytes(data[: len(data) // 2])
    return cut


def segment(source: str, out: Path, weights: Path, stdin: bytes | None, temp_dir: Path) -> subprocess.CompletedProcess:
    temp_dir.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "hmhi_cli", "segment", source, "-o", str(out), "--weights", str(weights),
         "--flow", "dis", "--save", "masks", "-q"],
        input=stdin, capture_output=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(temp_dir)},
    )


def leftovers(temp_dir: Path) -> list[str]:
    """What is left in the temporary folder, torch's own cache folder aside."""
    return [path.name for path in temp_dir.iterdir() if not path.name.startswith("torch")]


def test_camera_mp4_with_its_index_last_works_on_stdin_and_leaves_no_temporary_file(clips, tiny_weights, tmp_path):
    clip = clips["index last"]
    assert clip.read_bytes()[4:8] == b"ftyp" and clip.read_bytes().rfind(b"moov") > clip.read_bytes().find(b"mdat")
    temp_dir = tmp_path / "tmp"
    result = segment("-", tmp_path / "out", tiny_weights, clip.read_bytes(), temp_dir)
    assert result.returncode == 0, result.stderr.decode()
    assert sorted(p.name for p in (tmp_path / "out" / "masks").iterdir()) == [f"{i:05d}.png" for i in range(FRAMES)]
    assert leftovers(temp_dir) == []


def test_empty_stdin_says_so(tiny_weights, tmp_path):
    message = one_line_error(segment("-", tmp_path / "out", tiny_weights, b"", tmp_path / "tmp"))
    assert "stdin" in message and "empty" in message and "index" not in message, message


@pytest.mark.parametrize("kind,words", [("index first", "truncated: frame"), ("webm", "truncated")])
def test_truncated_video_on_stdin_is_rejected_like_the_same_file(clips, tiny_weights, tmp_path, kind, words):
    cut = first_half(clips[kind], tmp_path)
    temp_dir = tmp_path / "tmp"
    as_path = one_line_error(segment(str(cut), tmp_path / "from-path", tiny_weights, None, temp_dir))
    assert words in as_path, as_path
    piped = one_line_error(segment("-", tmp_path / "from-stdin", tiny_weights, cut.read_bytes(), temp_dir))
    assert words in piped and "stdin" in piped, piped
    assert not (tmp_path / "from-stdin" / "masks").exists()
    assert leftovers(temp_dir) == []


def test_unreadable_mp4_on_stdin_names_the_problem(clips, tiny_weights, tmp_path):
    cut = first_half(clips["index last"], tmp_path)
    message = one_line_error(segment("-", tmp_path / "out", tiny_weights, cut.read_bytes(), tmp_path / "tmp"))
    assert "not a video FFmpeg can read: stdin" in message and "faststart" not in message, message
    assert leftovers(tmp_path / "tmp") == []
