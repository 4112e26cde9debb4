"""End to end: the real ``hmhi segment`` CLI on a clip made from DAVIS frames."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from hmhi_cli.model import build_model
from hmhi_cli.weights import save_weights

DAVIS = Path(__file__).resolve().parents[1].parent / "shared" / "davis16-dev"
FRAMES = 8
WIDTH, HEIGHT = 214, 120
pytestmark = pytest.mark.skipif(not DAVIS.exists(), reason="../shared/davis16-dev absent")


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(build_model("mit_b0"), path, input_size=64, provenance={"purpose": "tests"})
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A variable-frame-rate H.264 clip of blackswan frames (timestamps 0, 1, 3, 4, 6, ... / 30 s)."""
    path = tmp_path_factory.mktemp("clip") / "blackswan.mp4"
    frames = sorted((DAVIS / "JPEGImages" / "480p" / "blackswan").glob("*.jpg"))[:FRAMES]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30, options={"bf": "0"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.time_base = Fraction(1, 30)
        for index, frame_path in enumerate(frames):
            rgb = cv2.cvtColor(cv2.resize(cv2.imread(str(frame_path)), (WIDTH, HEIGHT)), cv2.COLOR_BGR2RGB)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts = index + index // 2
            frame.time_base = Fraction(1, 30)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def make_clip(path: Path, sequence: str = "blackswan", frames: int = 4, size: tuple[int, int] = (64, 48),
              audio: str | None = None, audio_start: float = 0.0) -> Path:
    """A small H.264 clip of DAVIS frames at 25 fps (container from the suffix), with a 440 Hz stereo
    tone from ``audio_start`` to the end of the video when ``audio`` names a codec (aac, pcm_s16le)."""
    images = sorted((DAVIS / "JPEGImages" / "480p" / sequence).glob("*.jpg"))[:frames]
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25, options={"bf": "0"})
        video.width, video.height, video.pix_fmt = *size, "yuv420p"
        sound = container.add_stream(audio, rate=48000, layout="stereo") if audio else None
        for index, image_path in enumerate(images):
            rgb = cv2.cvtColor(cv2.resize(cv2.imread(str(image_path)), size), cv2.COLOR_BGR2RGB)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if sound is not None:
            first, end = round(audio_start * 48000), frames * 48000 // 25
            for start in range(first, end, 1024):
                tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(start, min(start + 1024, end)) / 48000))
                planes = np.stack([tone, tone]).astype(np.float32)
                if sound.format.name == "s16":
                    samples = av.AudioFrame.from_ndarray((planes.T.reshape(1, -1) * 32767).astype(np.int16), format="s16",
                                                         layout="stereo")
                else:
                    samples = av.AudioFrame.from_ndarray(planes, format="fltp", layout="stereo")
                samples.sample_rate, samples.pts = 48000, start
                for packet in sound.encode(samples):
                    container.mux(packet)
            for packet in sound.encode(None):
                container.mux(packet)
    return path


def run(*args: str, stdin: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hmhi_cli", *args], input=stdin, capture_output=True, timeout=600,
                          env={**os.environ, **(env or {})})


def video_timestamps(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(frame.pts * frame.time_base) for frame in container.decode(video=0)]


def libvpx_alpha_planes(path: Path) -> list[np.ndarray]:
    """Alpha planes of a VP9 WebM, decoded with libvpx (FFmpeg's native VP9 decoder drops alpha)."""
    decoder = av.CodecContext.create("libvpx-vp9", "r")
    planes = []
    with av.open(str(path)) as container:
        for packet in container.demux(video=0):
            for frame in decoder.decode(packet):
                assert frame.format.name == "yuva420p", frame.format.name
                alpha = frame.planes[3]
                planes.append(np.frombuffer(alpha, np.uint8).reshape(frame.height, alpha.line_size)[:, :frame.width])
    return planes


def test_every_output_has_the_right_count_size_and_timing(clip, tiny_weights, tmp_path):
    out = tmp_path / "out"
    result = run("segment", str(clip), "-o", str(out), "--weights", str(tiny_weights), "--flow", "dis",
                 "--save", "masks,probs,mask-video,overlay", "--save", "alpha", "--json")
    assert result.returncode == 0, result.stderr.decode()
    summary = json.loads(result.stdout)
    assert summary["frames"] == FRAMES and summary["width"] == WIDTH and summary["height"] == HEIGHT
    assert summary["encoder"] == "mit_b0" and summary["input_size"] == 64 and summary["flow"] == "dis"
    assert 0 < summary["startup_seconds"] < summary["seconds"]
    assert summary["stages"]["frames"] == FRAMES and summary["stages"]["model_s"] > 0
    for folder in ("masks", "probs", "alpha"):
        files = sorted((out / folder).glob("*.png"))
        assert [f.name for f in files] == [f"{i:05d}.png" for i in range(FRAMES)], folder
    mask = cv2.imread(str(out / "masks" / "00003.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (HEIGHT, WIDTH) and set(np.unique(mask)) <= {0, 255}
    rgba = cv2.imread(str(out / "alpha" / "00003.png"), cv2.IMREAD_UNCHANGED)
    assert rgba.shape == (HEIGHT, WIDTH, 4)
    probs = cv2.imread(str(out / "probs" / "00003.png"), cv2.IMREAD_UNCHANGED)
    assert probs.shape == (HEIGHT, WIDTH)
    np.testing.assert_array_equal(mask, np.where(rgba[..., 3] > 127, 255, 0))
    source_times = video_timestamps(clip)
    assert len(source_times) == FRAMES and source_times[2] == pytest.approx(3 / 30)
    for name in ("mask.mp4", "overlay.mp4", "alpha.mov"):
        times = video_timestamps(out / name)
        assert times == pytest.approx(source_times, abs=1e-3), name
    with av.open(str(out / "mask.mp4")) as container:
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height) == (WIDTH, HEIGHT)
    with av.open(str(out / "alpha.mov")) as container:
        assert container.streams.video[0].codec_context.pix_fmt.startswith("yuva")
    alphas = libvpx_alpha_planes(out / "alpha.webm")
    assert len(alphas) == FRAMES
    assert np.abs(alphas[3].astype(int) - rgba[..., 3].astype(int)).mean() < 4
    assert sorted(p.name for p in out.glob(".*")) == [".hmhi-input.json", ".hmhi-settings.json"], \
        "the notes of the input and settings, and no temporary files or folders"


def test_existing_outputs_need_overwrite(clip, tiny_weights, tmp_path):
    out = tmp_path / "out"
    args = ("segment", str(clip), "-o", str(out), "--weights", str(tiny_weights), "--flow", "dis", "-q")
    assert run(*args).returncode == 0
    for note in out.glob(".hmhi-*.json"):  # outputs as an earlier version, or someone's hand, left them
        note.unlink()
    again = one_line_error(run(*args))
    assert again == (f"error: output exists: {out / 'masks'} (+1 more), made by an earlier version of hmhi or by "
                     "hand (settings unknown); pass --overwrite to replace")
    assert run(*args, "--overwrite").returncode == 0


def test_stdin_and_image_folder_inputs(clip, tiny_weights, tmp_path):
    result = run("segment", "-", "-o", str(tmp_path / "stdin"), "--weights", str(tiny_weights), "--flow", "dis",
                 "--save", "masks", "--json", stdin=clip.read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["frames"] == FRAMES
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in (1, 2, 10):
        cv2.imwrite(str(folder / f"img{index}.jpg"), np.full((64, 96, 3), 40 * index % 255, np.uint8))
    result = run("segment", str(folder), "-o", str(tmp_path / "folder"), "--weights", str(tiny_weights),
                 "--flow", "dis", "--save", "masks,mask-video", "--fps", "10", "--json")
    assert result.returncode == 0, result.stderr.decode()
    assert len(list((tmp_path / "folder" / "masks").glob("*.png"))) == 3
    assert video_timestamps(tmp_path / "folder" / "mask.mp4") == pytest.approx([0.0, 0.1, 0.2])


def test_composite_on_a_background_colour(clip, tiny_weights, tmp_path):
    out = tmp_path / "out"
    result = run("segment", str(clip), "-o", str(out), "--weights", str(tiny_weights), "--flow", "dis",
                 "--save", "alpha", "--background", "green", "-q")
    assert result.returncode == 0, result.stderr.decode()
    assert (out / "composite.mp4").is_file() and not (out / "alpha.webm").exists()
    assert len(video_timestamps(out / "composite.mp4")) == FRAMES


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The stderr of a run that failed with one line of message and no traceback (text or bytes runs)."""
    stderr = result.stderr if isinstance(result.stderr, str) else result.stderr.decode()
    stderr = stderr.strip()
    assert result.returncode != 0, stderr
    assert stderr and "Traceback" not in stderr and stderr.count("\n") == 0, stderr
    return stderr


def test_bad_inputs_give_one_line_and_write_nothing(clip, tiny_weights, tmp_path):
    common = ("--weights", str(tiny_weights), "--flow", "dis")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {
        "missing": (str(tmp_path / "nope.mp4"), "not found"),
        "not a video": (str(text), str(text)),
        "truncated": (str(truncated), str(truncated)),
        "no images": (str(empty), "no images"),
    }
    for name, (source, expected) in cases.items():
        out = tmp_path / f"out-{name.replace(' ', '-')}"
        message = one_line_error(run("segment", source, "-o", str(out), *common))
        assert expected in message, (name, message)
        assert not out.exists() or not any(out.iterdir()), name


def test_bad_weights_and_outputs(clip, tiny_weights, tmp_path):
    wrong = tmp_path / "wrong.pth"
    torch.save({"network": {"decode_head.predictor.conv.weight": torch.zeros(1)}}, wrong)
    message = one_line_error(run("segment", str(clip), "-o", str(tmp_path / "a"), "--weights", str(wrong)))
    assert "wrong.pth" in message
    message = one_line_error(run("segment", str(clip), "-o", str(tmp_path / "b"),
                                 env={"HMHI_WEIGHTS": str(tmp_path / "absent.safetensors")}))
    assert "no trained weights" in message
    blocker = tmp_path / "file"
    blocker.write_text("x")
    message = one_line_error(run("segment", str(clip), "-o", str(blocker), "--weights", str(tiny_weights)))
    assert str(blocker) in message
    message = one_line_error(run("segment", str(clip), "-o", str(tmp_path / "c"), "--weights", str(tiny_weights),
                                 "--save", "masks,gif"))
    assert "gif" in message


def test_precomputed_flows_must_match_the_frames():
    from hmhi_cli.errors import InputError
    from hmhi_cli.inference import Segmenter

    segmenter = Segmenter(build_model("mit_b0"), None, 64)
    frames = [np.zeros((4, 4, 3), np.uint8) for _ in range(3)]
    assert len(list(segmenter.pairs(frames, frames))) == 3
    with pytest.raises(InputError, match="3 frames vs 2 flow images"):
        list(segmenter.pairs(frames, frames[:2]))
    with pytest.raises(InputError, match="3 frames vs 6 flow images"):
        list(segmenter.pairs(frames, frames * 2))
