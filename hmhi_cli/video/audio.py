"""The source's sound in a rendered MP4 (overlay, composite): copied when MP4 carries its codec,
else re-encoded to AAC, interleaved with the video by time and cut where the video ends.

PyAV's layout objects share a custom-order layout's channel map with FFmpeg and free it when
collected: reading such a layout, or decoding frames that carry one, corrupts memory (a garbled
layout name, then a double free that aborts the process). :func:`_channel_order` therefore reads
a stream's layout once, before anything else does, and hands the decoder an unspecified layout
of the same channel count; the decoded channels are then put into FFmpeg's native order.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from fractions import Fraction
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from hmhi_cli.atomic import atomic_path
from hmhi_cli.errors import OutputError

MP4_AUDIO_CODECS = frozenset({"aac", "mp3", "alac", "opus", "ac3", "eac3", "flac"})
"""Audio codecs copied into MP4 as they are; any other is re-encoded to AAC."""
_CONTAINER_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
AAC_BIT_RATE = 192_000
_AAC_SAMPLE_RATES = frozenset({96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000})
_AAC_FALLBACK_RATE = 48000
_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "4.0", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
_NATIVE_CHANNELS = tuple(channel.name for channel in av.AudioLayout(hex((1 << 63) - 1)).channels
                         if not channel.name.startswith("USR"))
"""Channel names in FFmpeg's native order (the order of their bits in a channel mask)."""


@dataclass(frozen=True)
class _ChannelOrder:
    """How a stream's decoded channels become a layout the AAC encoder takes.

    ``native``: the native layout to label frames with (None: keep the decoder's own);
    ``permutation``: decoded channel indices in native order (None: already in order);
    ``unkeepable``: why the sound cannot be kept (None: it can)."""

    channels: int
    description: str
    native: str | None = None
    permutation: tuple[int, ...] | None = None
    unkeepable: str | None = None


def add_audio(video_path: Path, audio_input: av.container.InputContainer, label: str,
              on_warning: Callable[[str], None] | None = None, start_seconds: Fraction | None = None) -> str | None:
    """Rewrite the MP4 ``video_path`` (or MOV, MKV, as its suffix says), in place and atomically, with the first audio stream of
    ``audio_input`` (``label`` names it in messages) beside its video; return what was done,
    ``"aac copied"`` or ``"pcm_s16le re-encoded to aac"``, or None when a channel layout that
    cannot be kept left the sound out (said through ``on_warning``).

    The video packets are copied. The audio keeps its timestamps, so it stays in sync with a
    video that kept the source's, and stops where the video ends. Channels in a custom order
    are put in FFmpeg's native order and re-encoded. ``start_seconds``: the video is part of the
    source, rebased to start at 0, from this source time on; the sound before it is left out
    (whole packets, up to one audio frame of about 20 ms) and the rest moved as much earlier.
    """
    shift = Fraction(0) if start_seconds is None else Fraction(start_seconds)
    source_audio = audio_input.streams.audio[0]
    context = source_audio.codec_context
    codec = context.name if context else "unknown"
    order = _channel_order(context) if context else None
    if order is not None and order.unkeepable:
        if on_warning:
            on_warning(f"the sound of {label} is left out of {video_path.name}: {order.unkeepable}")
        return None
    copy = codec in MP4_AUDIO_CODECS and (order is None or order.permutation is None)
    container_format = _CONTAINER_FORMATS.get(video_path.suffix.lower(), "mp4")
    try:
        with av.open(str(video_path)) as video_input, atomic_path(video_path) as temp, \
                av.open(str(temp), mode="w", format=container_format,
                        options={"movflags": "+faststart"} if container_format != "matroska" else {}) as output:
            source_video = video_input.streams.video[0]
            video_end = _end_seconds(video_input, source_video)
            video_out = output.add_stream_from_template(source_video)
            if copy:
                audio_out = output.add_stream_from_template(source_audio)
                audio_packets = _copied(audio_input, source_audio, audio_out, video_end, shift)
            else:
                if context is None:
                    raise OutputError(f"cannot keep the audio of {label}: no decoder for its codec; "
                                      "--no-audio leaves it out")
                audio_out = _aac_stream(output, context.sample_rate, order.channels)
                audio_packets = _reencoded(audio_input, source_audio, audio_out, video_end, order, shift)
            for _, _, packet in heapq.merge(_timed(_copied(video_input, source_video, video_out)),
                                            _timed(audio_packets), key=lambda item: item[:2]):
                output.mux(packet)
    except (av.FFmpegError, OSError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise OutputError(f"cannot keep the audio of {label} in {video_path.name}: {reason}; "
                          "--no-audio leaves it out") from err
    return f"{codec} copied" if copy else f"{codec} re-encoded to aac"


def _end_seconds(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    if stream.duration:
        return float(((stream.start_time or 0) + stream.duration) * stream.time_base)
    return container.duration / av.time_base


def _copied(container: av.container.InputContainer, stream: av.stream.Stream, target: av.stream.Stream,
            end_seconds: float = float("inf"), shift: Fraction = Fraction(0)) -> Iterator[av.Packet]:
    """The packets of ``stream`` that start before ``end_seconds`` on the video's timeline, which
    starts ``shift`` seconds into the source (the packets before that are left out), retargeted at ``target``."""
    offset = round(shift / stream.time_base)
    for packet in container.demux(stream):
        if packet.pts is None or (offset and packet.pts < offset) or (packet.pts - offset) * stream.time_base >= end_seconds:
            continue
        if offset:
            packet.pts -= offset
            if packet.dts is not None:
                packet.dts -= offset
        packet.stream = target
        yield packet


def _channel_order(context: av.audio.codeccontext.AudioCodecContext) -> _ChannelOrder:
    """Read the layout of a decoder not yet opened, and leave it one that PyAV handles safely.

    Must run before anything else reads ``context.layout`` or ``context.channels``: the layout
    object read here is the only one allowed to exist, and the decoder's own layout is replaced
    before that object frees the channel map they share."""
    layout = context.layout
    channels, description = layout.nb_channels, layout.name
    names = [channel.name for channel in layout.channels]
    context.layout = f"{channels} channels"
    del layout
    if description == f"{channels} channels":
        return _ChannelOrder(channels, description)
    if len(set(names)) != len(names) or not set(names) <= set(_NATIVE_CHANNELS):
        return _ChannelOrder(channels, description,
                             unkeepable=f"its channel layout, {description}, has no standard equivalent")
    in_order = sorted(names, key=_NATIVE_CHANNELS.index)
    permutation = tuple(names.index(name) for name in in_order)
    return _ChannelOrder(channels, description, native=av.AudioLayout("+".join(in_order)).name,
                         permutation=None if permutation == tuple(range(channels)) else permutation)


def _aac_stream(output: av.container.OutputContainer, sample_rate: int, channels: int) -> av.audio.stream.AudioStream:
    """An AAC stream for sound of ``sample_rate`` and ``channels``, kept where AAC allows them."""
    rate = sample_rate if sample_rate in _AAC_SAMPLE_RATES else _AAC_FALLBACK_RATE
    stream = output.add_stream("aac", rate=rate, layout=_LAYOUTS.get(channels, "stereo"))
    stream.bit_rate = AAC_BIT_RATE
    return stream


def _reencoded(container: av.container.InputContainer, stream: av.audio.stream.AudioStream,
               target: av.audio.stream.AudioStream, end_seconds: float, order: _ChannelOrder,
               shift: Fraction = Fraction(0)) -> Iterator[av.Packet]:
    """``stream`` decoded, its channels put in ``order``, and encoded by ``target``'s AAC encoder,
    the frames that start before ``end_seconds`` on a timeline ``shift`` seconds into the source
    (see :func:`_copied`)."""
    in_native_order = _NativeOrder(order)
    for packet in container.demux(stream):
        for frame in packet.decode():
            if shift and frame.pts is not None:
                offset = round(shift / frame.time_base)
                if frame.pts < offset:
                    continue
                frame.pts -= offset
            if frame.pts is not None and frame.pts * frame.time_base >= end_seconds:
                continue
            for native in in_native_order(frame):
                yield from target.encode(native)
    yield from target.encode(None)


class _NativeOrder:
    """Decoded frames with their channels reordered and labelled as a :class:`_ChannelOrder` says.

    Planar frames are made packed first: PyAV reads the planes of planar audio with 8 or more
    channels past the end of FFmpeg's plane pointers."""

    def __init__(self, order: _ChannelOrder) -> None:
        self.order = order
        self._packer: av.AudioResampler | None = None

    def __call__(self, frame: av.AudioFrame) -> list[av.AudioFrame]:
        if self.order.native is None:
            return [frame]
        if not frame.format.is_planar:
            return [self._relabelled(frame)]
        if self._packer is None:
            self._packer = av.AudioResampler(format=frame.format.packed.name, layout=frame.layout.name,
                                             rate=frame.sample_rate)
        return [self._relabelled(packed) for packed in self._packer.resample(frame)]

    def _relabelled(self, frame: av.AudioFrame) -> av.AudioFrame:
        samples = frame.to_ndarray()
        if self.order.permutation is not None:
            samples = samples.reshape(-1, self.order.channels)[:, self.order.permutation].reshape(1, -1)
        native = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format=frame.format.name,
                                            layout=self.order.native)
        native.sample_rate, native.pts, native.time_base = frame.sample_rate, frame.pts, frame.time_base
        return native


def _timed(packets: Iterator[av.Packet]) -> Iterator[tuple[Fraction, int, av.Packet]]:
    """Each packet keyed by its decoding time (then its stream) for interleaving."""
    for packet in packets:
        stamp = packet.dts if packet.dts is not None else packet.pts
        yield Fraction(stamp) * packet.time_base, packet.stream.index, packet
