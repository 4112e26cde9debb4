"""The source's sound in ``overlay.mp4`` and ``composite.mp4``: copied or re-encoded to AAC, in sync,
as long as the video; ``--no-audio`` leaves it out."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import av
import numpy as np
import pytest

from test_segment import DAVIS, make_clip, run, tiny_weights  # noqa: F401

pytestmark = pytest.mark.skipif(not DAVIS.exists(), reason="../shared/davis16-dev absent")
FRAMES = 8
FRAME_SECONDS = 1 / 25


def segment(clip: Path, out: Path, weights: Path, *more: str) -> dict:
    result = run("segment", str(clip), "-o", str(out), "--weights", str(weights), "--flow", "dis", "--json", *more)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def stream_span(path: Path, kind: str) -> tuple[float, float] | None:
    """Start and end in seconds of the first ``kind`` stream's packets, None when there is no such stream."""
    with av.open(str(path)) as container:
        streams = getattr(container.streams, kind)
        if not streams:
            return None
        packets = [packet for packet in container.demux(streams[0]) if packet.pts is not None]
    last = packets[-1]
    return float(packets[0].pts * packets[0].time_base), float((last.pts + last.duration) * last.time_base)


def audio_payloads(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(packet) for packet in container.demux(audio=0) if packet.size]


def test_aac_is_copied_into_overlay_and_composite_and_dropped_with_no_audio(tiny_weights, tmp_path):
    clip = make_clip(tmp_path / "talk.mp4", frames=FRAMES, audio="aac")
    out = tmp_path / "out"
    summary = segment(clip, out, tiny_weights, "--save", "overlay,alpha", "--background", "green")
    assert summary["audio"] == "aac copied"
    for name in ("overlay.mp4", "composite.mp4"):
        with av.open(str(out / name)) as container:
            assert container.streams.audio[0].codec_context.name == "aac", name
        assert audio_payloads(out / name) == audio_payloads(clip), f"{name}: the AAC packets are the source's own"
        video_start, video_end = stream_span(out / name, "video")
        audio_start, audio_end = stream_span(out / name, "audio")
        assert video_end == pytest.approx(FRAMES * FRAME_SECONDS, abs=1e-3)
        assert audio_start == pytest.approx(video_start, abs=0.03) and audio_end == pytest.approx(video_end, abs=0.03), name
    silent = segment(clip, tmp_path / "silent", tiny_weights, "--save", "overlay", "--no-audio")
    assert silent["audio"] is None and stream_span(tmp_path / "silent" / "overlay.mp4", "audio") is None


def test_pcm_is_reencoded_to_aac_in_sync_and_a_silent_source_stays_silent(tiny_weights, tmp_path):
    late = 0.08  # the sound starts two frames in: the output must keep that offset
    clip = make_clip(tmp_path / "camera.mov", frames=FRAMES, audio="pcm_s16le", audio_start=late)
    out = tmp_path / "out"
    summary = segment(clip, out, tiny_weights, "--save", "overlay")
    assert summary["audio"] == "pcm_s16le re-encoded to aac"
    with av.open(str(out / "overlay.mp4")) as container:
        sound = container.streams.audio[0]
        assert (sound.codec_context.name, sound.codec_context.sample_rate, sound.codec_context.channels) == ("aac", 48000, 2)
        first = next(frame for frame in container.decode(sound))
    assert float(first.pts * first.time_base) == pytest.approx(late, abs=0.025)
    _, video_end = stream_span(out / "overlay.mp4", "video")
    _, audio_end = stream_span(out / "overlay.mp4", "audio")
    assert audio_end == pytest.approx(video_end, abs=FRAME_SECONDS)
    mute = make_clip(tmp_path / "mute.mp4", frames=FRAMES)
    summary = segment(mute, tmp_path / "mute", tiny_weights, "--save", "overlay")
    assert summary["audio"] is None and stream_span(tmp_path / "mute" / "overlay.mp4", "audio") is None


MOV_LAYOUT_TAGS = {7: (125 << 16) | 7, 8: (128 << 16) | 8}
"""QuickTime layout tags MPEG_6_1_A and AAC_7_1, which FFmpeg reads as the custom-order layouts of
:data:`CUSTOM_ORDERS`: side channels before back ones."""
CUSTOM_ORDERS = {7: ["FL", "FR", "FC", "LFE", "SL", "SR", "BC"], 8: ["FL", "FR", "FC", "LFE", "SL", "SR", "BL", "BR"]}
NATIVE_ORDERS = {7: ["FL", "FR", "FC", "LFE", "BC", "SL", "SR"], 8: ["FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR"]}


def custom_layout_clip(path: Path, channels: int, loud: str) -> Path:
    """A .mov clip with PCM sound whose QuickTime layout tag gives a custom channel order, a tone
    in the channel named ``loud`` and silence in the others."""
    make_clip(path, frames=FRAMES)
    with av.open(str(path)) as source:
        pictures = [frame.to_ndarray(format="rgb24") for frame in source.decode(video=0)]
    native = {7: "6.1", 8: "7.1"}[channels]
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25, options={"bf": "0"})
        video.width, video.height, video.pix_fmt = pictures[0].shape[1], pictures[0].shape[0], "yuv420p"
        sound = container.add_stream("pcm_s16le", rate=48000, layout=native)
        for index, picture in enumerate(pictures):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        samples = FRAMES * 48000 // 25
        planes = np.zeros((channels, samples), np.int16)
        planes[CUSTOM_ORDERS[channels].index(loud)] = 8000 * np.sin(2 * np.pi * 440 * np.arange(samples) / 48000)
        frame = av.AudioFrame.from_ndarray(planes.T.reshape(1, -1), format="s16", layout=native)
        frame.sample_rate, frame.pts = 48000, 0
        container.mux(sound.encode(frame))
        container.mux(sound.encode(None))
    data = bytearray(path.read_bytes())
    chan = data.index(b"chan")  # version and flags, then layout tag and bitmap
    data[chan + 8 : chan + 16] = struct.pack(">II", MOV_LAYOUT_TAGS[channels], 0)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("channels,loud", [(7, "BC"), (8, "SL")])
def test_sound_in_a_custom_channel_order_is_kept_each_channel_in_its_place(tiny_weights, tmp_path, channels, loud):
    clip = custom_layout_clip(tmp_path / f"surround{channels}.mov", channels, loud)
    out = tmp_path / "out"
    summary = segment(clip, out, tiny_weights, "--save", "overlay")
    assert summary["audio"] == "pcm_s16le re-encoded to aac"
    with av.open(str(out / "overlay.mp4")) as container:
        sound = container.streams.audio[0]
        assert sound.codec_context.channels == channels
        # packed samples: PyAV reads the planes of planar audio with 8 channels out of bounds
        packed = av.AudioResampler(format="flt", layout=sound.codec_context.layout.name)
        decoded = np.concatenate([part.to_ndarray().reshape(-1, channels) for frame in container.decode(sound)
                                  for part in packed.resample(frame)])
    loudness = np.sqrt((decoded.astype(np.float64) ** 2).mean(axis=0))
    assert int(np.argmax(loudness)) == NATIVE_ORDERS[channels].index(loud), loudness
    assert np.sort(loudness)[-2] < 0.05 * loudness.max(), loudness
