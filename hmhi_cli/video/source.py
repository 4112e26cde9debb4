"""Frame sources: a video file, a video on stdin, or a folder of images, decoded one frame at a time."""

from __future__ import annotations

import abc
import dataclasses
import io
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import cv2
import numpy as np

from hmhi_cli.data.layouts import natural_sort_key as natural_key
from hmhi_cli.errors import InputError
from hmhi_cli.video.completeness import check_complete, check_pipe_complete, check_stated_duration

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
DEFAULT_IMAGE_FPS = Fraction(25)
_VFR_INDEX_SCAN = 5000
_HEAD_BYTES = 1024  # enough to tell the container and read a Matroska segment's size
_ISO_BMFF_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"})
_SPOOL_CHUNK = 1 << 20


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
    ``audio_codec``: codec of the first audio stream, None when there is none.
    ``rewindable``: the input can be read again (files and folders, not pipes).
    ``start_pts``: the first frame's :attr:`Frame.pts`, where the video's time 0 lies.
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
    audio_codec: str | None = None
    rewindable: bool = True
    start_pts: int = 0

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Frame]:
        """Yield the frames in display order."""

    def frames_from(self, seconds: Fraction) -> Iterator[Frame]:
        """Every frame from ``seconds`` after the first frame on, in display order, with its index in
        the whole video; it may begin with some earlier frames (which a caller skips by their time)."""
        yield from self

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
    Raises :class:`InputError` when the input is missing, unreadable, not a video, empty or
    truncated. The first frame is decoded here, so a broken input fails before any work starts;
    a piped stream that turns out shorter than its header says fails when its end is reached.
    """
    if hasattr(spec, "read"):
        name = getattr(spec, "name", None)
        return _open_stream(spec, label=name if isinstance(name, str) else "stream")
    if str(spec) == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise InputError("no video on stdin: pipe a video into the command when the input is '-'")
        return _open_stream(sys.stdin.buffer, label="stdin")
    path = Path(spec)
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        return ImageFolderSource(path, fps=DEFAULT_IMAGE_FPS if fps is None else fps)
    return VideoSource(path, label=str(path))


def _open_stream(stream: BinaryIO, label: str) -> VideoSource:
    """Open a video read from a binary file object (``label`` names it in messages).

    A seekable file is read in place, from its start. A pipe carrying MP4/MOV (whose index usually
    comes last, where only seeking reaches it) is first copied to an anonymous temporary file,
    which leaves nothing on disk however the process ends; other piped containers (WebM,
    Matroska, MPEG-TS) are decoded as they arrive.
    """
    try:
        seekable = stream.seekable()
        if seekable:
            stream.seek(0)
        head = _read_head(stream)
    except OSError as err:
        raise InputError(f"cannot read {label}: {err.strerror or err}") from err
    if not head:
        raise InputError(f"{label} is empty: no video data arrived")
    if seekable:
        return VideoSource(stream, label)
    if head[4:8] not in _ISO_BMFF_BOXES:
        return VideoSource(_PipeReader(head, stream), label)
    spool = _spool(head, stream, label)
    try:
        return VideoSource(spool, label, owns_file=True)
    except BaseException:
        spool.close()
        raise


def _read_head(pipe: BinaryIO) -> bytes:
    head = b""
    while len(head) < _HEAD_BYTES:
        chunk = pipe.read(_HEAD_BYTES - len(head))
        if not chunk:
            break
        head += chunk
    return head


def _spool(head: bytes, pipe: BinaryIO, label: str) -> BinaryIO:
    """Copy a pipe (whose first bytes were already read as ``head``) into an anonymous temporary file."""
    spool = tempfile.TemporaryFile(prefix="hmhi-")
    try:
        spool.write(head)
        shutil.copyfileobj(pipe, spool, _SPOOL_CHUNK)
        spool.seek(0)
    except OSError as err:
        spool.close()
        where = tempfile.gettempdir()
        raise InputError(f"cannot copy {label} to a temporary file in {where}: {err.strerror or err}") from err
    except BaseException:
        spool.close()
        raise
    return spool


class _PipeReader(io.RawIOBase):
    """A pipe whose first bytes (read to recognise the container) are served again first; counts bytes served."""

    def __init__(self, head: bytes, pipe: BinaryIO) -> None:
        super().__init__()
        self.head = head
        self.bytes_read = 0
        self._pipe = pipe

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.bytes_read < len(self.head):
            chunk = self.head[self.bytes_read : self.bytes_read + len(buffer)]
        else:
            chunk = self._pipe.read(len(buffer))
        buffer[: len(chunk)] = chunk
        self.bytes_read += len(chunk)
        return len(chunk)


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

    ``file``: a path, a seekable binary file (read from its start), or a pipe (read once).
    ``owns_file``: close ``file`` with the source.
    Frames are converted to RGB by swscale on one thread: FFmpeg 8's threaded conversion
    miswrites some pixels of alpha formats (seen with yuva420p and yuva444p10le).
    """

    def __init__(self, file: Path | BinaryIO, label: str, owns_file: bool = False) -> None:
        self._file = file
        self._owns_file = owns_file
        self._rotation = 0
        self.label = label
        self.name = file.stem if isinstance(file, Path) else Path(label).stem
        size_and_head = self._size_and_head() if self.rewindable else None
        container, stream, frames = self._start()
        try:
            if size_and_head is not None:
                check_complete(*size_and_head, stream, label)
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
        self.start_pts = first.pts
        self.height, self.width = first.rgb.shape[:2]
        self.time_base = Fraction(stream.time_base)
        self.fps = _stream_fps(stream)
        self.frame_count = stream.frames or None
        self.duration_seconds = _duration_seconds(container, stream)
        self.is_vfr = _looks_vfr(stream)
        if container.streams.audio:
            audio = container.streams.audio[0]
            self.audio_codec = audio.codec_context.name if audio.codec_context else "unknown"

    @property
    def rewindable(self) -> bool:
        """Whether the input can be read again (a file; not a pipe)."""
        return isinstance(self._file, Path) or self._file.seekable()

    def reopen(self) -> av.container.InputContainer:
        """The input opened again from its start, for a second pass such as copying its audio;
        the caller closes it. Raises :class:`InputError` for a pipe, which can be read only once."""
        if not self.rewindable:
            raise InputError(f"{self.label}: a piped video can only be read once")
        if not isinstance(self._file, Path):
            self._file.seek(0)
        return self._open_container()

    def _size_and_head(self) -> tuple[int, bytes]:
        """Size of the whole input in bytes and its first bytes."""
        if isinstance(self._file, Path):
            with self._file.open("rb") as handle:
                return self._file.stat().st_size, handle.read(_HEAD_BYTES)
        size = self._file.seek(0, io.SEEK_END)
        self._file.seek(0)
        head = self._file.read(_HEAD_BYTES)
        self._file.seek(0)
        return size, head

    def _start(self) -> tuple[av.container.InputContainer, av.video.stream.VideoStream, Iterator[Frame]]:
        container = self.reopen() if self.rewindable else self._open_container()
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
            raise InputError(f"not a video FFmpeg can read: {self.label} ({_ffmpeg_reason(err)})") from err

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
                if isinstance(self._file, _PipeReader):
                    check_pipe_complete(self._file, self.label)
                check_stated_duration(container, stream, float(next_pts * time_base), index, self.label)
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
        elif self.rewindable:
            container, _, frames = self._start()
        else:
            raise InputError(f"{self.label}: a piped video can only be read once")
        try:
            yield from frames
        finally:
            container.close()

    def frames_from(self, seconds: Fraction) -> Iterator[Frame]:
        """See :meth:`FrameSource.frames_from`. A file is entered by a seek to the keyframe before
        ``seconds``, decoded from there; its frames' indices come from counting, without decoding,
        the packets before that time. A pipe, or a seek that lands after the time, decodes from the start."""
        if seconds <= 0 or not self.rewindable:
            yield from self
            return
        target = self.start_pts + math.floor(seconds / self.time_base)
        self._drop_pending()
        first_index = self._frames_before(target)
        container, stream, frames = self._start()
        try:
            try:
                container.seek(target, stream=stream)
            except av.FFmpegError:
                landed = None
            else:
                landed = next(frames, None)
            if landed is not None and landed.pts <= target:
                index = first_index
                for frame in _chain_first(landed, frames):
                    if frame.pts >= target:
                        yield dataclasses.replace(frame, index=index)
                        index += 1
                return
        finally:
            container.close()
        yield from (frame for frame in self if frame.pts >= target)

    def _frames_before(self, target_pts: int) -> int:
        """How many frames are shown before ``target_pts``: the packets before it, read in decoding
        order until their decoding time reaches it (no later packet can be shown earlier)."""
        count = 0
        with self.reopen() as container:
            stream = _first_video_stream(container, self.label)
            for packet in container.demux(stream):
                if packet.dts is not None and packet.dts >= target_pts:
                    break
                if packet.pts is not None and packet.pts < target_pts and packet.size and not packet.is_discard:
                    count += 1
        return count

    def _drop_pending(self) -> None:
        if self._pending is not None:
            self._pending[0].close()
            self._pending = None

    def close(self) -> None:
        self._drop_pending()
        if self._owns_file:
            self._file.close()


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
        return self._frames(0)

    def frames_from(self, seconds: Fraction) -> Iterator[Frame]:
        """See :meth:`FrameSource.frames_from`: the images from the one at ``seconds`` (``--fps`` apart)."""
        return self._frames(max(0, math.floor(seconds * self.fps)))

    def _frames(self, first: int) -> Iterator[Frame]:
        for index in range(first, len(self.paths)):
            path = self.paths[index]
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
