"""What a composite puts behind the object: a colour, an image or a video (``--background``).

Images and video frames are scaled to cover the frame (aspect ratio kept, the overflow cropped
equally from both sides). A video background plays in step with the source's timestamps: looped
when shorter, cut where the source ends, decoded as it plays, so memory does not grow with its
length.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from hmhi_cli.errors import InputError
from hmhi_cli.video.source import Frame, open_source

Color = tuple[int, int, int]

COLOR_NAMES: dict[str, Color] = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
}
"""Named background colours (RGB). ``green`` and ``blue`` are the pure keying colours."""


def cover(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` (HxWx3) scaled, aspect ratio kept, to the smallest size that covers ``height`` x
    ``width``, then centre-cropped to it."""
    source_height, source_width = image.shape[:2]
    scale = max(width / source_width, height / source_height)
    scaled_width, scaled_height = max(width, math.ceil(source_width * scale)), max(height, math.ceil(source_height * scale))
    if (scaled_width, scaled_height) != (source_width, source_height):
        shrinking = scale < 1
        image = cv2.resize(image, (scaled_width, scaled_height),
                           interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    top, left = (scaled_height - height) // 2, (scaled_width - width) // 2
    return np.ascontiguousarray(image[top:top + height, left:left + width])


@dataclass
class Background:
    """A solid colour, an image (RGB) or a video file, given to :func:`~hmhi_cli.video.compose.composite`
    (colour, image) or played with :meth:`player` (all three)."""

    color: Color | None = None
    image: np.ndarray | None = None
    video: Path | None = None

    def array(self, height: int, width: int) -> np.ndarray:
        """The colour or image as an HxWx3 uint8 RGB array (the image scaled to cover the frame)."""
        if self.video is not None:
            raise ValueError("a video background changes from frame to frame: play it with player()")
        if self.image is None:
            return np.broadcast_to(np.asarray(self.color, dtype=np.uint8), (height, width, 3))
        return cover(self.image, height, width)

    def player(self, height: int, width: int) -> BackgroundPlayer:
        """The backdrops of one run with frames of this size."""
        return BackgroundPlayer(self, height, width)


class BackgroundPlayer:
    """Backdrops at the source's times (seconds from its first frame); :meth:`close` when done.

    A colour or an image is the same at every time. A video shows, at time t, its frame whose
    time span holds t, counting from its own first frame and starting over at its end.
    """

    def __init__(self, background: Background, height: int, width: int) -> None:
        self.height, self.width = height, width
        self._still = None if background.video is not None else background.array(height, width)
        self._frames = _looped(background.video) if background.video is not None else None
        self._current: np.ndarray | None = None
        self._shown: np.ndarray | None = None
        self._next = next(self._frames) if self._frames is not None else None
        self._first_pts: int | None = None

    def for_frame(self, frame: Frame) -> np.ndarray:
        """The backdrop of a source frame: :meth:`at` its time since the first frame given here."""
        if self._first_pts is None:
            self._first_pts = frame.pts
        return self.at(float((frame.pts - self._first_pts) * frame.time_base))

    def at(self, seconds: float) -> np.ndarray:
        """The HxWx3 uint8 RGB backdrop at ``seconds``; times must not decrease from call to call."""
        if self._frames is None:
            return self._still
        while self._current is None or self._next[0] <= seconds:
            self._current, self._shown = self._next[1], None
            self._next = next(self._frames)
        if self._shown is None:
            self._shown = cover(self._current, self.height, self.width)
        return self._shown

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()


def _looped(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    """The frames of the video ``path`` with their start times, played over and over: each pass
    starts where the one before ended (its last frame's end)."""
    offset = 0.0
    while True:
        end, count = offset, 0
        with open_source(path) as source:
            first = None
            for frame in source:
                first = frame.pts if first is None else first
                start = offset + float((frame.pts - first) * frame.time_base)
                yield start, frame.rgb
                count += 1
                step = frame.duration or 1 / (source.fps * frame.time_base)
                end = max(end, start + float(step * frame.time_base))
        if count == 0:
            raise InputError(f"background video {path}: no frames decoded")
        offset = end


def parse_color(spec: str) -> Color | None:
    """Read ``green``, ``#00ff00``, ``00ff00``, ``#0f0`` or ``0,255,0`` as RGB; None if it is none of these."""
    text = spec.strip().lower()
    if text in COLOR_NAMES:
        return COLOR_NAMES[text]
    hex_match = re.fullmatch(r"#?([0-9a-f]{6}|[0-9a-f]{3})", text)
    if hex_match:
        digits = hex_match.group(1)
        if len(digits) == 3:
            digits = "".join(c * 2 for c in digits)
        return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)
    rgb_match = re.fullmatch(r"(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})", text)
    if rgb_match:
        values = tuple(int(v) for v in rgb_match.groups())
        if all(v <= 255 for v in values):
            return values
    return None


def parse_background(spec: str) -> Background:
    """Turn a user's ``--background`` value (colour, image or video file) into a :class:`Background`.

    A file is read as an image when OpenCV can, else opened as a video (its first frame is
    decoded here). Raises :class:`InputError` for anything that is none of these.
    """
    color = parse_color(spec)
    if color is not None:
        return Background(color=color)
    path = Path(spec)
    if path.is_file():
        bgr = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
        if bgr is not None:
            return Background(image=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        try:
            with open_source(path):
                pass
        except InputError as err:
            raise InputError(f"cannot read background {path}: neither an image nor a video ({err})") from err
        return Background(video=path)
    names = ", ".join(sorted(COLOR_NAMES))
    raise InputError(f"background {spec!r} is not an image or video file nor a colour ({names}, #rrggbb or r,g,b)")
