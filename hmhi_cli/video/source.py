"""Frame sources: a video file, a video on stdin, or a folder of images, decoded one frame at a time."""

from __future__ import annotations

import abc
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import cv2
import numpy as np

from hmhi_cli.errors import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
DEFAULT_IMAGE_FPS = Fraction(25)
_VFR_INDEX_SCAN = 5000


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame, upright, with the timing needed to re-encode it at the same instant.

    ``pts`` and ``duration`` count ``time_base`` units, exactly as in the source stream;
    ``duration`` is None when the source does not say.
    """

    index: int
    rgb: np.ndarray
    pts: int
    duration: int | None
    time_base: Fraction

    @property
    def pts_seconds(self) -> float:
        """Presentation time of the frame in seconds."""
        return float(self.pts * self.time_base)


class FrameSource(abc.ABC):
    """Frames of a video or image folder plus what is known about them before decoding.

    Iterating yields :class:`Frame` objects one at a time (memory does not grow with length).
    Files and folders can be iterated more than once; stdin only once.
    Use as a context manager (or call :meth:`close`) to release the open file.

    ``name``: file or folder stem, for naming outputs. ``label``: path (or ``stdin``) for messages.
    ``width``/``height``: size of the upright frames. ``fps``: average frame rate.
    ``time_base``: unit of :attr:`Frame.pts`. ``frame_count``: from the container header, None when
    it has none (MKV, WebM, pipes); ``duration_seconds`` likewise; both are hints for progress.
    ``is_vfr``: frame durations vary. ``rotation_degrees``: clockwise turn applied to stored frames.
    """

    name: str
    label: str
    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    frame_count: int | None
    duration_seconds: float | None
    is_vfr: bool
    rotation_degrees: int

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Frame]:
        """Yield the frames in display order."""

    def close(self) -> None:
        """Release the open input, if any."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        count = "?" if self.frame_count is None else self.frame_count
        return f"<{type(self).__name__} {self.label!r} {self.width}x{self.height} {self.fps} fps {count} frames>"


def open_source(spec: str | os.PathLike | BinaryIO, fps: float | Fraction | str | None = None) -> FrameSource:
    """Open a video file, a folder of images, ``"-"`` (a video on stdin) or a binary file object.

    ``fps`` sets the frame rate of an image folder (default 25); videos keep their own timing.
    Raises :class:`InputError` when the input is missing, unreadable, not a video, or empty.
    The first frame is decoded here, so a broken input fails before any work starts.
    """
    if hasattr(spec, "read"):
        name = getattr(spec, "name", None)
        return VideoSource(spec, label=name if isinstance(name, str) else "stream")
    if str(spec) == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise InputError("no video on stdin: pipe a video into the command when the input is '-'")
        return VideoSource(sys.stdin.buffer, label="stdin")
    path = Path(spec)
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        return ImageFolderSource(path, fps=DEFAULT_IMAGE_FPS if fps is None else fps)
    return VideoSource(path, label=str(path))


def natural_key(name: str) -> tuple:
    """Sort key that orders embedded numbers by value: ``img2`` before ``img10``."""
    parts = re.split(r"(\d+)", name.lower())
    return tuple(int(part) if i % 2 else part for i, part in enumerate(parts)), name


def upright(rgb: np.ndarray, rotation_degrees: int) -> np.ndarray:
    """Turn a stored frame ``rotation_degrees`` clockwise (0, 90, 180, 270) so it displays upright."""
    turns = (rotation_degrees // 90) % 4
    if turns == 0:
        return rgb
    return np.ascontiguousarray(np.rot90(rgb, k=-turns))


def clockwise_rotation(display_matrix_degrees: float) -> int:
    """Clockwise turn (0, 90, 180, 270) that displays a frame whose display matrix rotates it
    ``display_matrix_degrees`` counter-clockwise (FFmpeg's sign convention, as in ``VideoFrame.rotation``)."""
    return int(-round(display_matrix_degrees / 90) * 90) % 360


def _ffmpeg_reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err) or type(err).__name__


class VideoSource(FrameSource):
    """A video decoded with PyAV (any container and codec FFmpeg reads).

    Frames are converted to RGB by swscale on one thread: FFmpeg 8's threaded conversion
    miswrites some pixels of alpha formats (seen with yuva420p and yuva444p10le).
    """

    def __init__(self, file: Path | BinaryIO, label: str) -> None:
        self._file = file
        self._rotation = 0
        self.label = label
        self.name = file.stem if isinstance(file, Path) else Path(label).stem
        container, stream, frames = self._start()
        try:
            if isinstance(file, Path):
                _check_complete(file, stream, label)
            first = next(frames, None)
            if first is None:
                raise InputError(f"{label}: contains no video frames (empty or truncated file)")
        except BaseException:
            container.close()
            raise
        self._pending: tuple[av.container.InputContainer, Iterator[Frame]] | None = (
            container,
            _chain_first(first, frames),
        )
        self.rotation_degrees = self._rotation
        self.height, self.width = first.rgb.shape[:2]
        self.time_base = Fraction(stream.time_base)
        self.fps = _stream_fps(stream)
        self.frame_count = stream.frames or None
        self.duration_seconds = _duration_seconds(container, stream)
        self.is_vfr = _looks_vfr(stream)

    def _start(self) -> tuple[av.container.InputContainer, av.video.stream.VideoStream, Iterator[Frame]]:
        container = self._open_container()
        try:
            stream = _first_video_stream(container, self.label)
        except BaseException:
            container.close()
            raise
        return container, stream, self._decode(container, stream)

    def _open_container(self) -> av.container.InputContainer:
        target = str(self._file) if isinstance(self._file, Path) else self._file
        try:
            return av.open(target, mode="r")
        except PermissionError as err:
            raise InputError(f"cannot read {self.label}: permission denied") from err
        except IsADirectoryError as err:
            raise InputError(f"cannot read {self.label}: it is a folder") from err
        except (av.FFmpegError, OSError) as err:
            piped = not isinstance(self._file, Path)
            hint = "; a piped MP4 must have its index first (ffmpeg -movflags +faststart)" if piped else ""
            raise InputError(f"not a video FFmpeg can read: {self.label} ({_ffmpeg_reason(err)}{hint})") from err

    def _decode(self, container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> Iterator[Frame]:
        time_base = Fraction(stream.time_base)
        fallback_step = max(1, round(1 / (_stream_fps(stream) * time_base)))
        frames = container.decode(stream)
        index = 0
        next_pts = 0
        while True:
            try:
                decoded = next(frames, None)
            except (av.FFmpegError, OSError) as err:
                reason = _ffmpeg_reason(err)
                raise InputError(
                    f"{self.label}: decoding failed at frame {index} ({reason}): the file is corrupt or truncated"
                ) from err
            if decoded is None:
                return
            if index == 0:
                self._rotation = clockwise_rotation(decoded.rotation)
            rgb = upright(decoded.to_ndarray(format="rgb24", threads=1), self._rotation)
            pts = decoded.pts if decoded.pts is not None else next_pts
            duration = decoded.duration or None
            next_pts = pts + (duration or fallback_step)
            yield Frame(index=index, rgb=rgb, pts=pts, duration=duration, time_base=time_base)
            index += 1

    def __iter__(self) -> Iterator[Frame]:
        if self._pending is not None:
            container, frames = self._pending
            self._pending = None
        elif isinstance(self._file, Path):
            container, _, frames = self._start()
        else:
            raise InputError(f"{self.label}: a piped video can only be read once")
        try:
            yield from frames
        finally:
            container.close()

    def close(self) -> None:
        if self._pending is not None:
            self._pending[0].close()
            self._pending = None


def _check_complete(path: Path, stream: av.video.stream.VideoStream, label: str) -> None:
    """Raise InputError when the file is shorter than its own header says.

    Demuxers stop quietly at the end of a cut file, so this is checked up front: MP4/MOV list
    where every frame's bytes are; Matroska/WebM headers give the length of the whole segment.
    """
    file_size = path.stat().st_size
    entries = stream.index_entries
    if stream.frames and len(entries) == stream.frames:
        last = entries[len(entries) - 1]
        if last.pos >= 0 and last.pos + last.size > file_size:
            cut = next(i for i in range(len(entries)) if entries[i].pos + entries[i].size > file_size)
            raise InputError(f"{label}: the file is truncated: frame {cut} of {len(entries)} is cut off")
    with path.open("rb") as handle:
        segment_end = _matroska_segment_end(handle.read(1024))
    if segment_end is not None and segment_end > file_size:
        raise InputError(f"{label}: the file is truncated: {file_size} of {segment_end} bytes")


def _matroska_segment_end(head: bytes) -> int | None:
    """Byte offset where a Matroska/WebM segment ends, from the first bytes of the file; None if unknown."""

    def vint(offset: int, keep_marker: bool) -> tuple[int, int, bool]:
        """An EBML variable-length number: (value, next offset, all data bits set = unknown size)."""
        length = 9 - head[offset].bit_length()
        if not 1 <= length <= 8 or offset + length > len(head):
            raise ValueError("bad EBML number")
        value = int.from_bytes(head[offset : offset + length], "big")
        data_mask = (1 << (7 * length)) - 1
        if not keep_marker:
            value &= data_mask
        return value, offset + length, value == data_mask

    try:
        element, offset, _ = vint(0, keep_marker=True)
        if element != 0x1A45DFA3:
            return None
        header_size, offset, _ = vint(offset, keep_marker=False)
        offset += header_size
        element, offset, _ = vint(offset, keep_marker=True)
        if element != 0x18538067:
            return None
        segment_size, offset, unknown = vint(offset, keep_marker=False)
    except (ValueError, IndexError):
        return None
    return None if unknown else offset + segment_size


def _chain_first(first: Frame, rest: Iterator[Frame]) -> Iterator[Frame]:
    yield first
    yield from rest


def _first_video_stream(container: av.container.InputContainer, label: str) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise InputError(f"{label}: has no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise InputError(f"{label}: no decoder for its video codec in this FFmpeg build")
    stream.thread_type = "AUTO"
    return stream


def _stream_fps(stream: av.video.stream.VideoStream) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    return DEFAULT_IMAGE_FPS


def _duration_seconds(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _looks_vfr(stream: av.video.stream.VideoStream) -> bool:
    """Whether frame durations vary, from the container index when it lists every frame
    (MP4/MOV), else from FFmpeg's two frame-rate estimates (a best guess for MKV, WebM, pipes)."""
    entries = stream.index_entries
    if stream.frames and len(entries) == stream.frames and len(entries) >= 3:
        stamps = sorted(entries[i].timestamp for i in range(min(len(entries), _VFR_INDEX_SCAN)))
        steps = np.diff(np.asarray(stamps, dtype=np.int64))
        median = float(np.median(steps))
        return bool(np.abs(steps - median).max() > max(1.0, 0.02 * median))
    average, base = stream.average_rate, stream.base_rate
    if not average or not base:
        return False
    return abs(float(average) - float(base)) > 0.005 * float(base)


class ImageFolderSource(FrameSource):
    """JPEG/PNG images of a folder in natural order (``img2`` before ``img10``), one frame each."""

    def __init__(self, folder: Path, fps: float | Fraction | str) -> None:
        try:
            rate = Fraction(fps).limit_denominator(1_001_000)
        except (ValueError, TypeError, ZeroDivisionError) as err:
            raise InputError(f"frame rate must be a number such as 25, 29.97 or 30000/1001, got {fps!r}") from err
        if rate <= 0:
            raise InputError(f"frame rate must be positive, got {fps}")
        self.label = str(folder)
        self.name = folder.resolve().name
        images = (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        self.paths = sorted((p for p in images if p.is_file()), key=lambda p: natural_key(p.name))
        if not self.paths:
            raise InputError(f"no images (.jpg, .jpeg, .png) in folder {folder}")
        first = read_image(self.paths[0])
        self.height, self.width = first.shape[:2]
        self.fps = rate
        self.time_base = 1 / rate
        self.frame_count = len(self.paths)
        self.duration_seconds = float(self.frame_count / rate)
        self.is_vfr = False
        self.rotation_degrees = 0

    def __iter__(self) -> Iterator[Frame]:
        for index, path in enumerate(self.paths):
            rgb = read_image(path)
            if rgb.shape[:2] != (self.height, self.width):
                size = f"{rgb.shape[1]}x{rgb.shape[0]}"
                raise InputError(f"{path}: image is {size} but the folder's first image is {self.width}x{self.height}")
            yield Frame(index=index, rgb=rgb, pts=index, duration=1, time_base=self.time_base)


def read_image(path: Path) -> np.ndarray:
    """Read an image file as upright RGB uint8 (EXIF orientation applied, 16-bit reduced to 8-bit)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise InputError(f"cannot read image {path}: {err.strerror or err}") from err
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise InputError(f"cannot read image {path}: not a valid JPEG or PNG file")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
