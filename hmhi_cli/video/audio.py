"""The source's sound in a rendered MP4 (overlay, composite): copied when MP4 carries its codec,
else re-encoded to AAC, interleaved with the video by time and cut where the video ends."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from hmhi_cli.atomic import atomic_path
from hmhi_cli.errors import OutputError

MP4_AUDIO_CODECS = frozenset({"aac", "mp3", "alac", "opus", "ac3", "eac3", "flac"})
"""Audio codecs copied into MP4 as they are; any other is re-encoded to AAC."""
AAC_BIT_RATE = 192_000
_AAC_SAMPLE_RATES = frozenset({96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000})
_AAC_FALLBACK_RATE = 48000
_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "4.0", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def add_audio(video_path: Path, audio_input: av.container.InputContainer, label: str) -> str:
    """Rewrite the MP4 ``video_path``, in place and atomically, with the first audio stream of
    ``audio_input`` (``label`` names it in messages) beside its video; return what was done,
    ``"aac copied"`` or ``"pcm_s16le re-encoded to aac"``.

    The video packets are copied. The audio keeps its timestamps, so it stays in sync with a
    video that kept the source's, and stops where the video ends.
    """
    source_audio = audio_input.streams.audio[0]
    codec = source_audio.codec_context.name if source_audio.codec_context else "unknown"
    copy = codec in MP4_AUDIO_CODECS
    try:
        with av.open(str(video_path)) as video_input, atomic_path(video_path) as temp, \
                av.open(str(temp), mode="w", format="mp4", options={"movflags": "+faststart"}) as output:
            source_video = video_input.streams.video[0]
            video_end = _end_seconds(video_input, source_video)
            video_out = output.add_stream_from_template(source_video)
            if copy:
                audio_out = output.add_stream_from_template(source_audio)
                audio_packets = _copied(audio_input, source_audio, audio_out, video_end)
            else:
                if source_audio.codec_context is None:
                    raise OutputError(f"cannot keep the audio of {label}: no decoder for its codec; "
                                      "--no-audio leaves it out")
                audio_out = _aac_stream(output, source_audio)
                audio_packets = _reencoded(audio_input, source_audio, audio_out, video_end)
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
            end_seconds: float = float("inf")) -> Iterator[av.Packet]:
    """The packets of ``stream`` that start before ``end_seconds``, retargeted at ``target``."""
    for packet in container.demux(stream):
        if packet.pts is None or packet.pts * stream.time_base >= end_seconds:
            continue
        packet.stream = target
        yield packet


def _aac_stream(output: av.container.OutputContainer, source: av.audio.stream.AudioStream) -> av.audio.stream.AudioStream:
    """An AAC stream for ``source``'s sound: same sample rate and channels where AAC allows them."""
    context = source.codec_context
    rate = context.sample_rate if context.sample_rate in _AAC_SAMPLE_RATES else _AAC_FALLBACK_RATE
    stream = output.add_stream("aac", rate=rate, layout=_LAYOUTS.get(context.channels, "stereo"))
    stream.bit_rate = AAC_BIT_RATE
    return stream


def _reencoded(container: av.container.InputContainer, stream: av.audio.stream.AudioStream,
               target: av.audio.stream.AudioStream, end_seconds: float) -> Iterator[av.Packet]:
    """``stream`` decoded and encoded by ``target``'s AAC encoder, the frames that start before ``end_seconds``."""
    for packet in container.demux(stream):
        for frame in packet.decode():
            if frame.pts is not None and frame.pts * frame.time_base >= end_seconds:
                continue
            yield from target.encode(frame)
    yield from target.encode(None)


def _timed(packets: Iterator[av.Packet]) -> Iterator[tuple[Fraction, int, av.Packet]]:
    """Each packet keyed by its decoding time (then its stream) for interleaving."""
    for packet in packets:
        stamp = packet.dts if packet.dts is not None else packet.pts
        yield Fraction(stamp) * packet.time_base, packet.stream.index, packet
