"""Whether an input holds all the bytes its header announces: demuxers stop quietly at the end
of a cut file, so :mod:`hmhi_cli.video.source` checks up front (files) or at the end (pipes)."""

from __future__ import annotations

import av

from hmhi_cli.errors import InputError


def check_complete(file_size: int, head: bytes, stream: av.video.stream.VideoStream, label: str) -> None:
    """Raise InputError when a file of ``file_size`` bytes starting with ``head`` is shorter than its header says.

    Demuxers stop quietly at the end of a cut file, so this is checked up front: MP4/MOV list
    where every frame's bytes are; Matroska/WebM headers give the length of the whole segment.
    """
    entries = stream.index_entries
    if stream.frames and len(entries) == stream.frames:
        last = entries[len(entries) - 1]
        if last.pos >= 0 and last.pos + last.size > file_size:
            cut = next(i for i in range(len(entries)) if entries[i].pos + entries[i].size > file_size)
            raise InputError(f"{label}: the file is truncated: frame {cut} of {len(entries)} is cut off")
    segment_end = matroska_segment_end(head)
    if segment_end is not None and segment_end > file_size:
        raise InputError(f"{label}: the file is truncated: {file_size} of {segment_end} bytes")


def check_pipe_complete(pipe, label: str) -> None:
    """Raise InputError when a piped Matroska/WebM stream ended before the segment its header announced."""
    segment_end = matroska_segment_end(pipe.head)
    if segment_end is not None and segment_end > pipe.bytes_read:
        raise InputError(f"{label}: the video is truncated: {pipe.bytes_read} of {segment_end} bytes arrived")


def matroska_segment_end(head: bytes) -> int | None:
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


def check_stated_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                          decoded_end: float, frames: int, label: str) -> None:
    """Raise InputError when a Matroska/WebM video whose decoded ``frames`` end at ``decoded_end``
    seconds ends more than two frames before the time its file states: a corrupt block ends the
    demuxer's reading as quietly as a cut file does."""
    stated = _stated_matroska_end(container, stream)
    if stated is None:
        return
    frame_seconds = 1 / float(stream.average_rate or stream.guessed_rate or 25)
    if stated - decoded_end > 2 * frame_seconds:
        raise InputError(f"{label}: the file is corrupt or truncated: {frames} frames decoded, ending at "
                         f"{decoded_end:.3f} s of the {stated:.3f} s it states")


def _stated_matroska_end(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    """When a Matroska/WebM file says its video ends, in seconds from time 0: the track's ``DURATION``
    tag (FFmpeg and mkvmerge write one), else the segment's duration when the video is the only
    stream; None if unknown."""
    if "matroska" not in container.format.name:
        return None
    tag = stream.metadata.get("DURATION")
    if tag:
        try:
            hours, minutes, seconds = tag.split(":")
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        except ValueError:
            return None
    if len(container.streams) == 1 and container.duration:
        return container.duration / av.time_base
    return None
