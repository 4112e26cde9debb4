"""The source's sound in ``overlay.mp4`` and ``composite.mp4``: copied or re-encoded to AAC, in sync,
as long as the video; ``--no-audio`` leaves it out."""

from __future__ import annotations

import json
from pathlib import Path

import av
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
