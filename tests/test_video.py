"""Tests for hmhi_cli.video on real DAVIS frames: decoding, timing, rotation, writers, blending, errors."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from hmhi_cli.errors import InputError, OutputError
from hmhi_cli.video import (
    AlphaVideoWriter,
    MaskVideoWriter,
    OverlayVideoWriter,
    PngSequenceWriter,
    check_writable,
    clockwise_rotation,
    composite,
    natural_key,
    open_source,
    overlay,
    parse_background,
    upright,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BLACKSWAN = SHARED / "davis16-dev" / "JPEGImages" / "480p" / "blackswan"
WIDTH, HEIGHT = 214, 120
VFR_PTS_MS = [0, 40, 80, 200, 240, 400, 440, 480, 520, 700]

pytestmark = pytest.mark.skipif(not BLACKSWAN.is_dir(), reason=f"DAVIS frames not found at {BLACKSWAN}")


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Twelve real frames (RGB, 214x120) from DAVIS blackswan."""
    paths = sorted(BLACKSWAN.glob("*.jpg"))[:12]
    small = [cv2.resize(cv2.imread(str(p)), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA) for p in paths]
    return [cv2.cvtColor(image, cv2.COLOR_BGR2RGB) for image in small]


def encode_clip(
    path: Path,
    images: list[np.ndarray],
    *,
    pts: list[int] | None = None,
    time_base: Fraction = Fraction(1, 1000),
    rate: Fraction = Fraction(25),
    rotation: float | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """Encode RGB frames to H.264 with PyAV directly (independently of the writers under test)."""
    fmt = "matroska" if path.suffix == ".mkv" else "mp4"
    with av.open(str(path), "w", format=fmt, options=options or {}) as container:
        stream = container.add_stream("libx264", rate=rate, options={"crf": "12", "bf": "0"})
        stream.height, stream.width = images[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        if pts is not None:
            stream.time_base = time_base
            stream.codec_context.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decode_all(path: Path) -> tuple[list[av.VideoFrame], av.video.stream.VideoStream]:
    """All frames of a file with PyAV's own decoder, plus its stream (for checks independent of open_source)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return list(container.decode(stream)), stream


def test_video_file_metadata_frames_and_timestamps(tmp_path, frames):
    clip = encode_clip(tmp_path / "swan.mp4", frames[:10])
    with open_source(clip) as source:
        assert (source.width, source.height) == (WIDTH, HEIGHT)
        assert source.fps == 25 and source.frame_count == 10 and source.duration_seconds == pytest.approx(0.4)
        assert source.name == "swan" and not source.is_vfr and source.rotation_degrees == 0
        decoded = list(source)
    assert [f.index for f in decoded] == list(range(10))
    assert [f.pts_seconds for f in decoded] == pytest.approx([i / 25 for i in range(10)], abs=1e-9)
    assert all(f.time_base == source.time_base for f in decoded)
    for frame in decoded:
        assert frame.rgb.shape == (HEIGHT, WIDTH, 3) and frame.rgb.dtype == np.uint8
        errors = [float(np.abs(frame.rgb.astype(int) - original).mean()) for original in frames[:10]]
        assert errors[frame.index] < 5 and int(np.argmin(errors)) == frame.index
    assert len(list(open_source(clip))) == 10


def test_vfr_source_is_detected(tmp_path, frames):
    clip = encode_clip(tmp_path / "vfr.mp4", frames[:10], pts=VFR_PTS_MS)
    with open_source(clip) as source:
        assert source.is_vfr
        assert [round(f.pts_seconds * 1000) for f in source] == VFR_PTS_MS


def moving_mask(index: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[20 + 3 * index : 70 + 3 * index, 30 + 5 * index : 120 + 5 * index] = 255
    return mask


@pytest.mark.parametrize("name,lossless", [("mask.mp4", False), ("mask.mkv", True)])
def test_vfr_timestamps_round_trip_through_mask_writer(tmp_path, frames, name, lossless):
    clip = encode_clip(tmp_path / "vfr.mp4", frames[:10], pts=VFR_PTS_MS)
    target = tmp_path / name
    with open_source(clip) as source, MaskVideoWriter.for_source(target, source, lossless=lossless) as writer:
        for frame in source:
            writer.write(moving_mask(frame.index), pts=frame.pts, duration=frame.duration)
    decoded, stream = decode_all(target)
    assert len(decoded) == 10
    assert [round(float(f.pts * f.time_base) * 1000) for f in decoded] == VFR_PTS_MS
    for index, frame in enumerate(decoded):
        grey = frame.to_ndarray(format="gray", threads=1)
        if lossless:
            np.testing.assert_array_equal(grey, moving_mask(index))
        else:
            np.testing.assert_array_equal(grey >= 128, moving_mask(index) >= 128)
    with av.open(str(target)) as container:
        assert container.duration / 1e6 == pytest.approx(0.74, abs=0.002)


@pytest.mark.parametrize("size", [(214, 120), (215, 121)])
def test_mask_mp4_keeps_frame_size_and_grey_levels(tmp_path, size):
    width, height = size
    mask = np.zeros((height, width), np.uint8)
    mask[:, width // 4 : width // 2] = 64
    mask[:, width // 2 : 3 * width // 4] = 128
    mask[:, 3 * width // 4 :] = 255
    with MaskVideoWriter(tmp_path / "mask.mp4", width, height, fps=25) as writer:
        for _ in range(3):
            writer.write(mask)
    decoded, _ = decode_all(tmp_path / "mask.mp4")
    assert len(decoded) == 3
    grey = decoded[-1].to_ndarray(format="gray", threads=1)
    assert grey.shape == (height, width)
    for x in (width // 8, 3 * width // 8, 5 * width // 8, 7 * width // 8):
        assert abs(int(grey[height // 2, x]) - int(mask[height // 2, x])) <= 3


def tkhd_matrix(path: Path) -> tuple[int, ...]:
    """The 3x3 track display matrix of a version-0 MP4 'tkhd' box, read from the bytes."""
    data = path.read_bytes()
    body = data[data.index(b"tkhd") + 4 :]
    assert body[0] == 0
    return struct.unpack(">9i", body[40:76])


def test_rotation_metadata_gives_upright_frames(tmp_path, frames):
    clip = encode_clip(tmp_path / "portrait.mp4", frames[:4], rotation=-90)
    # The matrix a phone writes for a portrait recording: turn 90 degrees clockwise to display.
    assert tkhd_matrix(clip)[:4] == (0, 1 << 16, 0, -(1 << 16))
    raw, _ = decode_all(clip)
    with open_source(clip) as source:
        assert source.rotation_degrees == 90
        assert (source.width, source.height) == (HEIGHT, WIDTH)
        for frame, stored in zip(source, raw):
            expected = cv2.rotate(stored.to_ndarray(format="rgb24", threads=1), cv2.ROTATE_90_CLOCKWISE)
            np.testing.assert_array_equal(frame.rgb, expected)


def test_rotation_helpers():
    image = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(upright(image, 90), [[3, 0], [4, 1], [5, 2]])
    np.testing.assert_array_equal(upright(image, 270), [[2, 5], [1, 4], [0, 3]])
    np.testing.assert_array_equal(upright(image, 180), [[5, 4, 3], [2, 1, 0]])
    assert upright(image, 0) is image
    assert [clockwise_rotation(d) for d in (-90.0, 90.0, 180.0, -180.0, 0.0, -89.6)] == [90, 270, 180, 180, 0, 90]


def test_natural_key_orders_numbers_by_value():
    names = ["img10.png", "img2.png", "img1.png", "IMG3.jpg", "a.png"]
    assert sorted(names, key=natural_key) == ["a.png", "img1.png", "img2.png", "IMG3.jpg", "img10.png"]


def test_image_folder_natural_order_and_fps(tmp_path, frames):
    folder = tmp_path / "shots"
    folder.mkdir()
    for number, image in zip((10, 2, 1), frames):
        cv2.imwrite(str(folder / f"img{number}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "img3.jpg"), cv2.cvtColor(frames[3], cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"")
    with open_source(folder, fps=10) as source:
        assert (source.width, source.height, source.frame_count) == (WIDTH, HEIGHT, 4)
        assert source.fps == 10 and source.time_base == Fraction(1, 10) and source.name == "shots"
        assert source.duration_seconds == pytest.approx(0.4)
        decoded = list(source)
    assert [f.pts for f in decoded] == [0, 1, 2, 3]
    assert [f.pts_seconds for f in decoded] == pytest.approx([0, 0.1, 0.2, 0.3])
    np.testing.assert_array_equal(decoded[0].rgb, frames[2])  # img1
    np.testing.assert_array_equal(decoded[1].rgb, frames[1])  # img2
    assert np.abs(decoded[2].rgb.astype(int) - frames[3]).mean() < 3  # img3.jpg
    np.testing.assert_array_equal(decoded[3].rgb, frames[0])  # img10
    assert open_source(folder).fps == 25
    assert open_source(folder, fps="30000/1001").time_base == Fraction(1001, 30000)
    with pytest.raises(InputError, match="frame rate"):
        open_source(folder, fps="fast")


class NonSeekable(io.RawIOBase):
    """A pipe-like reader: no seeking, like stdin."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_non_seekable_stream_is_read_once(tmp_path, frames):
    clip = encode_clip(tmp_path / "pipe.mkv", frames[:6], pts=[0, 40, 80, 160, 200, 240])
    source = open_source(NonSeekable(clip.read_bytes()))
    assert source.frame_count is None and (source.width, source.height) == (WIDTH, HEIGHT)
    assert [round(f.pts_seconds * 1000) for f in source] == [0, 40, 80, 160, 200, 240]
    with pytest.raises(InputError, match="only be read once"):
        list(source)


def test_dash_reads_video_from_stdin(tmp_path, frames):
    clip = encode_clip(tmp_path / "stdin.mp4", frames[:5], options={"movflags": "+faststart"})
    script = (
        "import json; from hmhi_cli.video import open_source\n"
        "s = open_source('-')\n"
        "print(json.dumps({'name': s.label, 'size': [s.width, s.height], 'pts': [f.pts_seconds for f in s]}))"
    )
    with clip.open("rb") as stdin:
        result = subprocess.run(
            [sys.executable, "-c", script], stdin=stdin, capture_output=True, text=True, cwd=REPO, timeout=60,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["name"] == "stdin" and report["size"] == [WIDTH, HEIGHT]
    assert report["pts"] == pytest.approx([0, 0.04, 0.08, 0.12, 0.16])


def soft_matte(height: int, width: int) -> np.ndarray:
    """A matte with opaque, transparent and a horizontal ramp of partial alpha."""
    alpha = np.zeros((height, width), np.uint8)
    alpha[10:110, 20:100] = 255
    alpha[10:110, 100:200] = np.linspace(255, 0, 100).astype(np.uint8)[None, :]
    return alpha


def test_alpha_webm_keeps_alpha_for_libvpx_decoder(tmp_path, frames):
    alpha = soft_matte(HEIGHT, WIDTH)
    target = tmp_path / "object.webm"
    with AlphaVideoWriter(target, WIDTH, HEIGHT, fps=25) as writer:
        for image in frames[:4]:
            writer.write(image, alpha)
    with av.open(str(target)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "vp9"
        decoder = av.CodecContext.create("libvpx-vp9", "r")
        decoded = [f for packet in container.demux(stream) for f in decoder.decode(packet)]
    assert len(decoded) == 4
    for frame, image in zip(decoded, frames):
        assert frame.format.name == "yuva420p"
        rgba = frame.to_ndarray(format="rgba", threads=1)
        error = np.abs(rgba[..., 3].astype(int) - alpha)
        assert error.mean() < 1 and np.percentile(error, 99) <= 4
        assert np.abs(rgba[..., :3].astype(int) - image).mean() < 6


def test_alpha_prores_4444_keeps_alpha(tmp_path, frames):
    alpha = soft_matte(HEIGHT, WIDTH)
    target = tmp_path / "object.mov"
    with AlphaVideoWriter(target, WIDTH, HEIGHT, fps=25) as writer:
        for image in frames[:3]:
            writer.write(image, alpha)
    decoded, stream = decode_all(target)
    assert stream.codec_context.name == "prores" and stream.codec_context.profile == "4444"
    assert len(decoded) == 3
    for frame, image in zip(decoded, frames):
        assert frame.format.name.startswith("yuva444p")  # FFmpeg decodes ProRes 4444 to 12 bits
        bits = int(frame.format.name.removeprefix("yuva444p").removesuffix("le"))
        plane = frame.planes[3]
        samples = np.frombuffer(plane, np.uint16).reshape(plane.height, -1)[:, : frame.width]
        assert np.abs(samples / ((1 << bits) - 1) * 255 - alpha).max() <= 1
        assert np.abs(frame.to_ndarray(format="rgb24", threads=1).astype(int) - image).mean() < 2


QUADRANT_COLORS = [(255, 0, 80), (20, 200, 40), (30, 60, 220), (240, 230, 30)]


def quadrants(height: int, width: int) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    image[:h, :w], image[:h, w:], image[h:, :w], image[h:, w:] = QUADRANT_COLORS
    return image


def quadrant_centres(image: np.ndarray) -> list[list[int]]:
    height, width = image.shape[:2]
    rows, cols = (height // 4, 3 * height // 4), (width // 4, 3 * width // 4)
    return [image[y, x].astype(int).tolist() for y in rows for x in cols]


@pytest.mark.parametrize("name", ["object.webm", "object.mov", "overlay.mp4"])
def test_writers_keep_saturated_colours(tmp_path, name):
    """Flat saturated colours survive encode + decode, so the colour matrix written matches the tags."""
    image, empty = quadrants(HEIGHT, WIDTH), np.zeros((HEIGHT, WIDTH), np.uint8)
    if name == "overlay.mp4":
        with OverlayVideoWriter(tmp_path / name, WIDTH, HEIGHT, fps=25) as writer:
            writer.write(image, empty)
    else:
        with AlphaVideoWriter(tmp_path / name, WIDTH, HEIGHT, fps=25) as writer:
            writer.write(image, empty + 255)
    decoded, _ = decode_all(tmp_path / name)
    with open_source(tmp_path / name) as source:
        ours = next(iter(source)).rgb
    for picture in (decoded[0].to_ndarray(format="rgb24", threads=1), ours):
        for got, want in zip(quadrant_centres(picture), QUADRANT_COLORS):
            assert np.abs(np.subtract(got, want)).max() <= 3, (got, want)


def test_overlay_pixels_hand_computed():
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:] = (101, 150, 200)
    mask = np.zeros((40, 60), np.uint8)
    mask[10:30, 15:45] = 255
    out = overlay(rgb, mask, color=(255, 0, 80), opacity=0.5)
    np.testing.assert_array_equal(out[20, 30], [178, 75, 140])  # (101+255)/2, 150/2, (200+80)/2
    np.testing.assert_array_equal(out[2, 2], [101, 150, 200])
    np.testing.assert_array_equal(out[10, 30], [255, 0, 80])  # the outline on the mask's top edge
    np.testing.assert_array_equal(out[20, 15], [255, 0, 80])
    half = overlay(rgb, mask.astype(bool), color=(255, 0, 80), opacity=1.0)
    np.testing.assert_array_equal(half[20, 30], [255, 0, 80])


def test_composite_and_background_specs(tmp_path):
    rgb = np.full((4, 6, 3), (200, 100, 50), np.uint8)
    alpha = np.array([[255, 0, 128, 51, 255, 0]] * 4, np.uint8)
    out = composite(rgb, alpha, "green")
    np.testing.assert_array_equal(out[0, 0], [200, 100, 50])
    np.testing.assert_array_equal(out[0, 1], [0, 255, 0])
    np.testing.assert_array_equal(out[0, 2], np.rint([200 * 128 / 255, 255 + (100 - 255) * 128 / 255, 50 * 128 / 255]))
    np.testing.assert_array_equal(out[0, 3], [40, 224, 10])  # alpha 0.2
    for spec in ("green", "#00ff00", "00FF00", "#0f0", "0,255,0", " 0, 255, 0 "):
        assert parse_background(spec).color == (0, 255, 0)
    picture = np.zeros((10, 20, 3), np.uint8)
    picture[:, 10:] = (0, 0, 255)
    cv2.imwrite(str(tmp_path / "back.png"), picture)  # BGR: right half red
    on_image = composite(rgb, np.zeros((4, 6), np.uint8), str(tmp_path / "back.png"))
    np.testing.assert_array_equal(on_image[:, 0], [[0, 0, 0]] * 4)
    np.testing.assert_array_equal(on_image[:, 5], [[255, 0, 0]] * 4)
    (tmp_path / "bad.png").write_text("not a png")
    for bad in ("notacolour", "300,0,0", "#12345", str(tmp_path / "missing.png"), str(tmp_path / "bad.png")):
        with pytest.raises(InputError) as caught:
            parse_background(bad)
        assert "\n" not in str(caught.value)


def test_overlay_writer_keeps_an_odd_size(tmp_path, frames):
    image = frames[0][:119, :213]
    mask = np.zeros((119, 213), np.uint8)
    mask[30:90, 50:150] = 255
    with OverlayVideoWriter(tmp_path / "overlay.mp4", 213, 119, fps=25) as writer:
        for _ in range(2):
            writer.write(image, mask)
    decoded, _ = decode_all(tmp_path / "overlay.mp4")
    assert len(decoded) == 2 and (decoded[0].width, decoded[0].height) == (213, 119)
    picture = decoded[0].to_ndarray(format="rgb24", threads=1).astype(float)
    expected = overlay(image, mask).astype(float)
    assert 10 * np.log10(255**2 / np.mean((picture - expected) ** 2)) > 27  # PSNR in dB
    inside = (slice(45, 75), slice(70, 130))
    np.testing.assert_allclose(picture[inside].mean(axis=(0, 1)), expected[inside].mean(axis=(0, 1)), atol=2)


def test_png_sequence_writer_names_resume_and_partials(tmp_path):
    folder = tmp_path / "masks"
    folder.mkdir()
    leftover = folder / ".00002.png.abc.part.png"
    leftover.write_bytes(b"half")
    grey = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)
    rgba = np.dstack([np.full((12, 16, 3), (10, 20, 30), np.uint8), grey])
    with PngSequenceWriter(folder) as writer:
        assert not leftover.exists() and writer.existing() == set()
        writer.write(0, grey)
        writer.write(1, rgba)
        writer.write(3, grey > 100)
        assert writer.existing() == {0, 1, 3}
    assert sorted(p.name for p in folder.iterdir()) == ["00000.png", "00001.png", "00003.png"]
    np.testing.assert_array_equal(cv2.imread(str(folder / "00000.png"), cv2.IMREAD_UNCHANGED), grey)
    back = cv2.cvtColor(cv2.imread(str(folder / "00001.png"), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)
    np.testing.assert_array_equal(back, rgba)
    np.testing.assert_array_equal(cv2.imread(str(folder / "00003.png"), cv2.IMREAD_UNCHANGED), (grey > 100) * 255)
    assert PngSequenceWriter(folder).existing() == {0, 1, 3}


@pytest.mark.parametrize(
    "make_writer",
    [
        lambda d: MaskVideoWriter(d / "mask.mp4", WIDTH, HEIGHT),
        lambda d: MaskVideoWriter(d / "mask.mkv", WIDTH, HEIGHT, lossless=True),
        lambda d: AlphaVideoWriter(d / "alpha.webm", WIDTH, HEIGHT),
        lambda d: AlphaVideoWriter(d / "alpha.mov", WIDTH, HEIGHT),
        lambda d: OverlayVideoWriter(d / "overlay.mp4", WIDTH, HEIGHT),
    ],
)
def test_exception_inside_writer_leaves_no_file(tmp_path, frames, make_writer):
    out = tmp_path / "out"
    mask = moving_mask(0)
    with pytest.raises(KeyError):
        with make_writer(out) as writer:
            for _ in range(3):
                if isinstance(writer, MaskVideoWriter):
                    writer.write(mask)
                else:
                    writer.write(frames[0], mask)
            raise KeyError("stop")
    assert list(out.iterdir()) == []


def test_check_writable(tmp_path):
    assert check_writable(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="file"):
        check_writable(tmp_path / "file")
    with pytest.raises(OutputError):
        check_writable(tmp_path / "file" / "sub")
    with pytest.raises(OutputError):
        MaskVideoWriter(tmp_path / "mask.avi", WIDTH, HEIGHT)


def truncated_copy(clip: Path, target: Path) -> Path:
    data = clip.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def corrupted_copy(clip: Path, target: Path, frame: int) -> Path:
    """A copy of an MP4 with one frame's coded bytes overwritten with noise."""
    with av.open(str(clip)) as container:
        entry = container.streams.video[0].index_entries[frame]
    data = bytearray(clip.read_bytes())
    noise = np.random.default_rng(0).integers(0, 256, entry.size, dtype=np.uint8)
    data[entry.pos : entry.pos + entry.size] = noise.tobytes()
    target.write_bytes(bytes(data))
    return target


def bad_inputs(tmp: Path, images: list[np.ndarray]) -> dict[str, tuple[Path, str]]:
    """Broken inputs and the words their error must contain."""
    (tmp / "text.mp4").write_text("this is not a video\n" * 20)
    (tmp / "empty.mp4").write_bytes(b"")
    (tmp / "empty_folder").mkdir()
    (tmp / "broken_folder").mkdir()
    cv2.imwrite(str(tmp / "broken_folder" / "00000.png"), images[0])
    (tmp / "broken_folder" / "00001.png").write_text("garbage")
    index_last = encode_clip(tmp / "index_last.mp4", images)
    index_first = encode_clip(tmp / "index_first.mp4", images, options={"movflags": "+faststart"})
    matroska = encode_clip(tmp / "clip.mkv", images, pts=list(range(0, 40 * len(images), 40)))
    return {
        "missing": (tmp / "nope.mp4", "not found"),
        "text": (tmp / "text.mp4", "not a video"),
        "empty file": (tmp / "empty.mp4", "not a video"),
        "truncated, index at end": (truncated_copy(index_last, tmp / "cut_last.mp4"), "not a video"),
        "truncated, index first": (truncated_copy(index_first, tmp / "cut_first.mp4"), "truncated: frame"),
        "truncated mkv": (truncated_copy(matroska, tmp / "cut.mkv"), "truncated"),
        "corrupt frame": (corrupted_copy(index_first, tmp / "noise.mp4", frame=6), "decoding failed at frame"),
        "empty folder": (tmp / "empty_folder", "no images"),
        "unreadable image": (tmp / "broken_folder", "00001.png"),
    }


def test_bad_inputs_raise_one_line_input_errors(tmp_path, frames):
    for case, (path, words) in bad_inputs(tmp_path, frames).items():
        with pytest.raises(InputError) as caught:
            list(open_source(path))
        message = str(caught.value)
        assert words in message, case
        assert str(path) in message and "\n" not in message, case


def test_file_objects_seekable_are_reread_and_piped_mp4_is_complete(tmp_path, frames):
    clip = encode_clip(tmp_path / "camera.mp4", frames[:5])
    in_memory = open_source(io.BytesIO(clip.read_bytes()))
    assert in_memory.frame_count == 5
    assert len(list(in_memory)) == len(list(in_memory)) == 5
    with open_source(NonSeekable(clip.read_bytes())) as piped:
        assert piped.frame_count == 5 and [f.index for f in piped] == list(range(5))
    with pytest.raises(InputError, match="empty"):
        open_source(NonSeekable(b""))
