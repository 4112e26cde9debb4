"""Output writers: mask, RGB and overlay videos (PyAV), a lossless video stream for pipes, and
PNG sequences (OpenCV); the alpha and lossless video files are in :mod:`hmhi_cli.video.alpha_writers`.

Every writer is a context manager that takes one frame per ``write`` call and keeps nothing
but the encoder's own small look-ahead in memory. Video files are written to a temporary file
beside the target and renamed when the ``with`` block ends without error; on an exception
the temporary file is deleted, so the target name only ever holds a finished file.

Video ``write`` calls take the source frame's ``pts`` and ``duration`` (in the writer's
``time_base``, normally the source's) so the output keeps the source timing, variable frame
rate included. ``pts=None`` puts the frame right after the previous one; a timestamp that does
not increase is moved one tick past the previous frame, since containers require increasing ones.
"""

from __future__ import annotations

import abc
import contextlib
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, ClassVar, Self

import av
import cv2
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from hmhi_cli.atomic import atomic_path, remove_partials, write_bytes
from hmhi_cli.errors import OutputError, WriteError
from hmhi_cli.video.background import Color
from hmhi_cli.video.compose import DEFAULT_OVERLAY_COLOR, as_uint8_mask, overlay
from hmhi_cli.video.source import FrameSource

_CONTAINER_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
_BT709 = 1  # AVCOL_SPC / AVCOL_PRI / AVCOL_TRC value for BT.709


def check_writable(directory: str | os.PathLike) -> Path:
    """Create ``directory`` if needed and make sure a file can be written in it; return it as a Path.

    Raises :class:`OutputError` with one line when the folder cannot be created or written.
    """
    folder = Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except FileExistsError as err:
        raise OutputError(f"cannot use {folder} as output folder: a file with that name exists") from err
    except OSError as err:
        raise WriteError(f"cannot write to output folder {folder}: {err.strerror or err}") from err
    return folder


def _reason(err: BaseException) -> str:
    return getattr(err, "strerror", None) or str(err) or type(err).__name__


class _VideoEncoder(abc.ABC):
    """Shared machinery: one video stream in a container, source timing kept frame by frame.

    Subclasses say which codec and pixel format suit the output (:meth:`_encoding`), where the
    container goes (:meth:`_open_container`), what to do once it is complete (:meth:`_publish`)
    and after a failure (:meth:`_discard`). FFmpeg and I/O errors
    become one-line :class:`OutputError`\\ s naming :attr:`label`, except a closed pipe, which
    stays a :class:`BrokenPipeError` so that callers can end quietly.
    """

    codec: str
    pix_fmt: str
    label: str

    def __init__(
        self,
        width: int,
        height: int,
        *,
        fps: Fraction | float = Fraction(25),
        time_base: Fraction | None = None,
    ) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"frame size must be positive, got {width}x{height}")
        self.width = width
        self.height = height
        self.fps = Fraction(fps).limit_denominator(1_001_000)
        self.time_base = Fraction(time_base) if time_base else 1 / self.fps
        self.frames_written = 0
        self._step = max(1, round(1 / (self.fps * self.time_base)))
        self._min_pts = 0
        self._follow_pts = 0
        self._durations: dict[int, int] = {}
        self._container: Any = None
        self._stream: Any = None
        self.codec, self.pix_fmt = self._encoding()

    @classmethod
    def for_source(cls, target: Any, source: FrameSource, **options: Any) -> Self:
        """A writer to ``target`` with the size, frame rate and time base of ``source``."""
        return cls(target, source.width, source.height, fps=source.fps, time_base=source.time_base, **options)

    @abc.abstractmethod
    def _encoding(self) -> tuple[str, str]:
        """The codec and pixel format for this output (called once its size and target are known)."""

    @abc.abstractmethod
    def _open_container(self) -> Any:
        """The output container, opened for writing."""

    @abc.abstractmethod
    def _publish(self) -> None:
        """Make the complete output available."""

    def _discard(self, exc: BaseException) -> None:
        """Remove what a failed write left."""

    @abc.abstractmethod
    def _codec_options(self) -> dict[str, str]:
        """Encoder options (quality, speed, profile)."""

    @abc.abstractmethod
    def _configure(self, stream: Any) -> None:
        """Set the colour tags of the codec context."""

    @contextlib.contextmanager
    def _errors_in_one_line(self) -> Iterator[None]:
        try:
            yield
        except BrokenPipeError:
            raise
        except (av.FFmpegError, OSError) as err:
            raise WriteError(f"cannot write {self.label}: {_reason(err)}") from err

    def __enter__(self) -> Self:
        try:
            with self._errors_in_one_line():
                self._container = self._open_container()
                stream = self._container.add_stream(self.codec, rate=self.fps, options=self._codec_options())
                stream.width, stream.height = self.width, self.height
                stream.pix_fmt = self.pix_fmt
                stream.time_base = self.time_base
                stream.codec_context.time_base = self.time_base
                self._configure(stream)
                self._stream = stream
        except BaseException as err:
            self._abandon(err)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            self._abandon(exc)
            return
        try:
            with self._errors_in_one_line():
                self._mux(self._stream.encode(None))
                self._container.close()
        except BaseException as err:
            self._abandon(err)
            raise
        with self._errors_in_one_line():
            self._publish()

    def _abandon(self, exc: BaseException) -> None:
        """Close the container and discard the output after a failure."""
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
        with contextlib.suppress(BaseException):
            self._discard(exc)

    def _encode(self, frame: av.VideoFrame, pts: int | None, duration: int | None) -> None:
        if self._stream is None:
            raise RuntimeError(f"{type(self).__name__} must be used in a with-block")
        if pts is None:
            pts = self._follow_pts
        elif self.frames_written and pts < self._min_pts:
            pts = self._min_pts
        duration = duration if duration and duration > 0 else self._step
        frame.pts = pts
        frame.time_base = self.time_base
        frame.duration = duration
        self._durations[pts] = duration
        self._min_pts = pts + 1
        self._follow_pts = pts + duration
        with self._errors_in_one_line():
            self._mux(self._stream.encode(frame))
        self.frames_written += 1

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            packet.duration = self._durations.pop(packet.pts, self._step)
            self._container.mux(packet)

    def _check_shape(self, array: np.ndarray, channels: int | None, what: str) -> None:
        expected = (self.height, self.width) if channels is None else (self.height, self.width, channels)
        if array.shape != expected:
            raise ValueError(f"{what} must have shape {expected}, got {array.shape}")


class VideoFileWriter(_VideoEncoder):
    """A video file, written to a temporary file beside it and renamed into place when complete."""

    allowed_suffixes: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        *,
        fps: Fraction | float = Fraction(25),
        time_base: Fraction | None = None,
    ) -> None:
        self.path = Path(path)
        self.label = str(self.path)
        if self.path.suffix.lower() not in self.allowed_suffixes:
            allowed = ", ".join(self.allowed_suffixes)
            raise OutputError(f"cannot write {self.path}: {type(self).__name__} writes {allowed} files")
        super().__init__(width, height, fps=fps, time_base=time_base)
        self._atomic: contextlib.AbstractContextManager[Path] | None = None

    def _container_options(self) -> dict[str, str]:
        return {}

    def _open_container(self) -> Any:
        self._atomic = atomic_path(self.path)
        temp = self._atomic.__enter__()
        return av.open(str(temp), mode="w", format=_CONTAINER_FORMATS[self.path.suffix.lower()],
                       options=self._container_options())

    def _publish(self) -> None:
        self._atomic.__exit__(None, None, None)

    def _discard(self, exc: BaseException) -> None:
        if self._atomic is not None:
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)


def rgb_frame(rgb: np.ndarray, pix_fmt: str, alpha: np.ndarray | None = None) -> av.VideoFrame:
    """An RGB(+alpha) array as a BT.709 limited-range YUV frame of ``pix_fmt``.

    swscale runs on one thread: FFmpeg 8's threaded conversion miswrites some alpha
    samples (seen with yuva420p and yuva444p10le).
    """
    if alpha is None:
        source = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb, dtype=np.uint8), format="rgb24")
    else:
        source = av.VideoFrame.from_ndarray(np.dstack([rgb, alpha]).astype(np.uint8, copy=False), format="rgba")
    return source.reformat(
        format=pix_fmt, dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG, threads=1
    )


def tag_bt709(stream: Any) -> None:
    context = stream.codec_context
    context.colorspace = _BT709
    context.color_primaries = _BT709
    context.color_trc = _BT709
    context.color_range = ColorRange.MPEG.value


LOSSLESS_PIXEL_FORMATS = {1: "gray", 3: "bgr0", 4: "bgra"}
"""FFV1 pixel formats by channel count: exact grey, RGB and RGBA."""
FFV1_OPTIONS = {"level": "3", "slicecrc": "1"}
"""FFV1 version 3 with checksummed slices, for the lossless mask video and stream."""

MASK_CRF = 16
RGB_CRF = 20
"""x264 CRF of mask videos and of RGB videos (composite, overlay) unless told otherwise (``crf``)."""
MASK_PRESET = "faster"
"""x264 preset of H.264 mask videos: on two-level masks it decodes to the same error as
"medium" (mean 0.07 levels, no pixel across 127) for 40% less encoding time, files 11% larger."""


class MaskVideoWriter(VideoFileWriter):
    """A grey mask video (255 = object) with the source's frame count and timestamps.

    ``lossless=False``: H.264 (libx264, CRF ``crf``, default 16) in ``.mp4``/``.mov``/``.mkv``. Even frame sizes use
    yuv420p, limited range, which every player handles. H.264 4:2:0 cannot code an odd width or
    height, so odd sizes are written as 4:0:0 grey (High profile, full range) at the exact size:
    FFmpeg, VLC, mpv and browsers play it; some editors may not.
    ``lossless=True``: FFV1 grey in ``.mkv``, bit-exact mask values.
    """

    allowed_suffixes = (".mp4", ".mov", ".mkv")

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        *,
        fps: Fraction | float = Fraction(25),
        time_base: Fraction | None = None,
        lossless: bool = False,
        crf: int = MASK_CRF,
    ) -> None:
        if lossless and Path(path).suffix.lower() != ".mkv":
            raise OutputError(f"cannot write {path}: a lossless mask video must be .mkv")
        self.lossless = lossless
        self.crf = crf
        super().__init__(path, width, height, fps=fps, time_base=time_base)

    def _encoding(self) -> tuple[str, str]:
        if self.lossless:
            return "ffv1", "gray"
        return "libx264", "gray" if self.width % 2 or self.height % 2 else "yuv420p"

    def _codec_options(self) -> dict[str, str]:
        if self.lossless:
            return dict(FFV1_OPTIONS)
        return {"crf": str(self.crf), "preset": MASK_PRESET, "bf": "0"}

    def _container_options(self) -> dict[str, str]:
        return {"movflags": "+faststart"} if self.path.suffix.lower() in (".mp4", ".mov") else {}

    def _configure(self, stream: Any) -> None:
        stream.codec_context.color_range = (
            ColorRange.MPEG.value if self.pix_fmt == "yuv420p" else ColorRange.JPEG.value
        )

    def write(self, mask: np.ndarray, pts: int | None = None, duration: int | None = None) -> None:
        """Append one mask (HxW; uint8 0..255, bool, or float 0..1) at ``pts`` (source time base)."""
        mask = as_uint8_mask(mask)
        self._check_shape(mask, None, "mask")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(mask), format="gray")
        if self.pix_fmt == "yuv420p":
            frame = frame.reformat(
                format="yuv420p", src_color_range=ColorRange.JPEG, dst_color_range=ColorRange.MPEG, threads=1
            )
        self._encode(frame, pts, duration)


class RgbVideoWriter(VideoFileWriter):
    """Plain RGB frames (e.g. a cut-out composited on a background), H.264 (CRF ``crf``, default
    20) in ``.mp4`` or ``.mov`` at the exact frame size.

    Even sizes use yuv420p, which every player handles. H.264 4:2:0 cannot code an odd width or
    height, so odd sizes are written as yuv444p (High 4:4:4 profile): FFmpeg, VLC and mpv play
    it; browsers and some editors may not.
    """

    allowed_suffixes = (".mp4", ".mov")

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        *,
        fps: Fraction | float = Fraction(25),
        time_base: Fraction | None = None,
        crf: int = RGB_CRF,
    ) -> None:
        self.crf = crf
        super().__init__(path, width, height, fps=fps, time_base=time_base)

    def _encoding(self) -> tuple[str, str]:
        return "libx264", "yuv444p" if self.width % 2 or self.height % 2 else "yuv420p"

    def _codec_options(self) -> dict[str, str]:
        return {"crf": str(self.crf), "preset": "veryfast", "bf": "0"}

    def _container_options(self) -> dict[str, str]:
        return {"movflags": "+faststart"}

    def _configure(self, stream: Any) -> None:
        tag_bt709(stream)

    def write(self, rgb: np.ndarray, pts: int | None = None, duration: int | None = None) -> None:
        """Append one HxWx3 uint8 RGB frame."""
        self._check_shape(rgb, 3, "rgb")
        self._encode(rgb_frame(rgb, self.pix_fmt), pts, duration)


class OverlayVideoWriter(RgbVideoWriter):
    """A preview: the source with the mask tinted over it and outlined, H.264 ``.mp4`` as :class:`RgbVideoWriter`."""

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        *,
        fps: Fraction | float = Fraction(25),
        time_base: Fraction | None = None,
        color: Color = DEFAULT_OVERLAY_COLOR,
        opacity: float = 0.5,
    ) -> None:
        super().__init__(path, width, height, fps=fps, time_base=time_base)
        self.color = color
        self.opacity = opacity

    def write(self, rgb: np.ndarray, mask: np.ndarray, pts: int | None = None, duration: int | None = None) -> None:
        """Append the overlay of one HxWx3 uint8 RGB frame and its HxW mask (uint8, bool or float 0..1)."""
        self._check_shape(rgb, 3, "rgb")
        super().write(overlay(rgb, mask, self.color, self.opacity), pts, duration)


class StreamVideoWriter(_VideoEncoder):
    """A lossless video stream, FFV1 in Matroska, written to a binary file object such as stdout.

    FFmpeg and players read it from a pipe as it is written (``... | ffmpeg -i - out.mov``).
    ``channels`` says what each frame holds: 1 grey (masks, soft maps), 3 RGB, 4 RGBA (straight
    alpha); pixels are coded exactly, as ``gray``, ``bgr0`` and ``bgra``. Matroska counts time in
    milliseconds. A reader that closes the pipe early makes ``write`` raise :class:`BrokenPipeError`.
    """

    _PIXEL_FORMATS: ClassVar[dict[int, str]] = LOSSLESS_PIXEL_FORMATS

    def __init__(
        self,
        output: BinaryIO,
        width: int,
        height: int,
        *,
        channels: int,
        fps: Fraction | float = Fraction(25),
        time_base: Fraction | None = None,
        label: str = "stdout",
    ) -> None:
        if channels not in self._PIXEL_FORMATS:
            raise ValueError(f"channels must be 1, 3 or 4, got {channels}")
        self.channels = channels
        super().__init__(width, height, fps=fps, time_base=time_base)
        self.label = label
        self._output = output

    def _encoding(self) -> tuple[str, str]:
        return "ffv1", self._PIXEL_FORMATS[self.channels]

    def _open_container(self) -> Any:
        return av.open(self._output, mode="w", format="matroska")

    def _publish(self) -> None:
        self._output.flush()

    def _codec_options(self) -> dict[str, str]:
        return dict(FFV1_OPTIONS)

    def _configure(self, stream: Any) -> None:
        stream.codec_context.color_range = ColorRange.JPEG.value

    def write(self, image: np.ndarray, pts: int | None = None, duration: int | None = None) -> None:
        """Append one uint8 frame: HxW grey, HxWx3 RGB or HxWx4 RGBA, as ``channels`` says."""
        self._check_shape(image, None if self.channels == 1 else self.channels, "frame")
        self._encode(lossless_frame(image, self.pix_fmt), pts, duration)


def lossless_frame(image: np.ndarray, pix_fmt: str) -> av.VideoFrame:
    """A uint8 HxW grey, HxWx3 RGB or HxWx4 RGBA array as an FFV1 frame of ``pix_fmt`` (gray, bgr0, bgra)."""
    pixels = np.ascontiguousarray(image, dtype=np.uint8)
    if pixels.ndim == 2:
        return av.VideoFrame.from_ndarray(pixels, format="gray")
    source_format = "rgb24" if pixels.shape[2] == 3 else "rgba"
    return av.VideoFrame.from_ndarray(pixels, format=source_format).reformat(format=pix_fmt, threads=1)


def write_image(path: str | os.PathLike, image: np.ndarray, params: Sequence[int] = ()) -> None:
    """Write ``image`` (HxW grey, or BGR/BGRA as OpenCV orders colours) atomically, in the format its
    suffix names (``.png``, ``.jpg``), with OpenCV's ``params`` (e.g. ``[cv2.IMWRITE_JPEG_QUALITY, 95]``);
    failures become one-line :class:`OutputError`\\ s."""
    ok, encoded = cv2.imencode(Path(path).suffix, image, list(params))
    if not ok:
        raise OutputError(f"cannot encode {path}")
    try:
        write_bytes(path, encoded.tobytes())
    except OSError as err:
        raise WriteError(f"cannot write {path}: {err.strerror or err}") from err


class PngSequenceWriter:
    """Numbered PNGs ``00000.png``, ``00001.png`` ... (DAVIS naming) in one folder, each written atomically.

    Grey (HxW: masks, probability maps), RGB (HxWx3) or RGBA (HxWx4, e.g. cut-outs) uint8 arrays.
    Because files appear only when complete, :meth:`existing` tells which frames a previous,
    interrupted run already finished.
    """

    _NAME = re.compile(r"^(\d{5,})\.png$")

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = check_writable(folder)
        remove_partials(self.folder)

    def __enter__(self) -> PngSequenceWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def path(self, index: int) -> Path:
        """Where frame ``index`` is written."""
        return self.folder / f"{index:05d}.png"

    def existing(self) -> set[int]:
        """Indices of the frames already written."""
        return {int(match.group(1)) for p in self.folder.iterdir() if (match := self._NAME.match(p.name))}

    def write(self, index: int, image: np.ndarray) -> Path:
        """Write frame ``index``; a 2-D bool or float (0..1) mask is scaled to 0..255."""
        if image.ndim == 2:
            pixels = as_uint8_mask(image)
        elif image.ndim == 3 and image.shape[2] in (3, 4) and image.dtype == np.uint8:
            conversion = cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA
            pixels = cv2.cvtColor(image, conversion)
        else:
            raise ValueError(f"PNG frames must be HxW, HxWx3 or HxWx4 uint8, got {image.shape} {image.dtype}")
        target = self.path(index)
        write_image(target, pixels)
        return target
