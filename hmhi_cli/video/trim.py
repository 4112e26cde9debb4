"""Part of a video: ``--start SECONDS``, ``--duration SECONDS`` and ``--frames N``, as ffmpeg's
``-ss``, ``-t`` and ``-frames:v`` (input side).

Frames are chosen by presentation time, counted from the source's first frame: a frame is kept
when its time is at or after the start (to within a microsecond, as ffmpeg rounds), before the
start plus the duration, and among the first N so chosen. Files are entered by a seek to the
keyframe before the start (see :meth:`FrameSource.frames_from`); pipes are decoded from their start.

What a trim yields keeps the source's frame numbers (:attr:`Frame.index`, so PNG names of two trims
of one video never collide) and its frame durations, variable frame rate included; timestamps are
rebased so that the first frame kept is at 0, as ffmpeg's output is after ``-ss``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction

import av
import numpy as np

from hmhi_cli.errors import InputError
from hmhi_cli.video.source import Frame, FrameSource

TOLERANCE = Fraction(1, 1_000_000)
"""How far before a boundary a frame's time may fall and still count as on it (ffmpeg's microsecond)."""


def _seconds(value: float) -> Fraction:
    """``value`` as the decimal the user typed (``0.04`` is 1/25, not the binary float near it)."""
    return Fraction(repr(float(value)))


@dataclass(frozen=True)
class Trim:
    """Which part of a video to segment: from ``start`` seconds, for ``duration`` seconds (None: to
    the end), at most ``frames`` frames (None: no limit). Raises :class:`InputError` for a
    negative or non-finite time, a duration that is not positive, or fewer than one frame."""

    start: float = 0.0
    duration: float | None = None
    frames: int | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.start) or self.start < 0:
            raise InputError(f"--start must be a time of 0 seconds or more, got {self.start}")
        if self.duration is not None and not (math.isfinite(self.duration) and self.duration > 0):
            raise InputError(f"--duration must be a time of more than 0 seconds, got {self.duration}")
        if self.frames is not None and self.frames < 1:
            raise InputError(f"--frames must be at least 1, got {self.frames}")

    @classmethod
    def from_options(cls, start: float | None, duration: float | None, frames: int | None) -> Trim | None:
        """The trim that ``--start``, ``--duration`` and ``--frames`` ask for; None when none is given."""
        if start is None and duration is None and frames is None:
            return None
        return cls(0.0 if start is None else start, duration, frames)

    @property
    def start_seconds(self) -> Fraction:
        return _seconds(self.start)

    @property
    def end_seconds(self) -> Fraction | None:
        """Where the trim ends (exclusive), None for the end of the video."""
        return None if self.duration is None else self.start_seconds + _seconds(self.duration)


class TrimmedSource(FrameSource):
    """The frames of ``source`` that ``trim`` keeps (see the module's description).

    ``frame_count`` and ``duration_seconds`` are estimates for progress (None when unknown).
    After iterating, :attr:`offset_seconds` is the source time of the first frame kept (where the
    rebased timeline starts, for cutting the sound) and :meth:`next_rgb` the frame that follows
    the last one kept, if any: the flow of the last frame kept goes to it, as it would untrimmed.
    Raises :class:`InputError` when the start lies past the end of the video.
    """

    def __init__(self, source: FrameSource, trim: Trim) -> None:
        self.source = source
        self.trim = trim
        for name in ("name", "label", "width", "height", "fps", "time_base", "is_vfr", "rotation_degrees",
                     "audio_codec", "rewindable"):
            setattr(self, name, getattr(source, name))
        if source.duration_seconds is not None and trim.start_seconds >= Fraction(source.duration_seconds):
            raise self._past_the_end(source.duration_seconds)
        self.frame_count = expected_frames(source.frame_count, source.fps, trim)
        self.duration_seconds = _expected_seconds(source, trim)
        self.offset_seconds = Fraction(0)
        self._following: Frame | None = None

    def _past_the_end(self, length: float) -> InputError:
        return InputError(f"--start {self.trim.start:g} is past the end of {self.source.label}: "
                          f"the video is {round(length, 2):g} s long")

    def __iter__(self) -> Iterator[Frame]:
        start, end, limit = self.trim.start_seconds, self.trim.end_seconds, self.trim.frames
        source_start = self.source.start_pts
        self._following = None
        first_pts = None
        kept = 0
        last: Frame | None = None
        frames = self.source.frames_from(start - TOLERANCE)
        try:
            for frame in frames:
                last = frame
                seconds = (frame.pts - source_start) * frame.time_base
                if seconds < start - TOLERANCE:
                    continue
                if (end is not None and seconds >= end - TOLERANCE) or (limit is not None and kept >= limit):
                    self._following = frame
                    break
                if first_pts is None:
                    first_pts = frame.pts
                    self.offset_seconds = frame.pts * frame.time_base
                kept += 1
                yield replace(frame, pts=frame.pts - first_pts)
        finally:
            frames.close()
        if kept == 0:
            length = 0.0 if last is None else float((last.pts - source_start + (last.duration or 0)) * last.time_base)
            raise self._past_the_end(length)

    def next_rgb(self) -> np.ndarray | None:
        """The frame after the last one kept (once iterated), None at the end of the video."""
        return None if self._following is None else self._following.rgb

    def reopen(self) -> av.container.InputContainer:
        """The source opened again from its start (for its sound)."""
        return self.source.reopen()

    def close(self) -> None:
        self.source.close()


def expected_frames(frame_count: int | None, fps: Fraction, trim: Trim | None) -> int | None:
    """How many frames ``trim`` keeps of a video of ``frame_count`` frames (None: unknown) at ``fps``:
    exact for a constant frame rate, an estimate otherwise; None when nothing bounds it."""
    if trim is None:
        return frame_count
    bounds = [] if trim.frames is None else [trim.frames]
    if trim.end_seconds is not None:
        bounds.append(math.ceil((trim.end_seconds - trim.start_seconds) * fps - TOLERANCE))
    if frame_count is not None:
        bounds.append(max(0, frame_count - math.ceil(trim.start_seconds * fps - TOLERANCE)))
    return min(bounds, default=None)


def _expected_seconds(source: FrameSource, trim: Trim) -> float | None:
    bounds = [] if trim.duration is None else [trim.duration]
    if source.duration_seconds is not None:
        bounds.append(source.duration_seconds - trim.start)
    return min(bounds, default=None)
