"""End to end through the CLI on DAVIS frames: ``-o FILE.ext`` writes exactly one video file,
the alpha formats chosen one by one with their quality knobs, a video background, the
foreground layer, and the matte with a composite from one run."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from hmhi_cli.video import cover
from test_segment import DAVIS, FRAMES, HEIGHT, WIDTH, clip, libvpx_alpha_planes, one_line_error, run, tiny_weights  # noqa: F401

pytestmark = pytest.mark.skipif(not DAVIS.exists(), reason="../shared/davis16-dev absent")


def segment(clip: Path, weights: Path, out: Path, *args: str, quiet: bool = True):
    return run("segment", str(clip), "-o", str(out), "--weights", str(weights), "--flow", "dis",
               *(("-q",) if quiet else ()), *args)


def decoded(path: Path, format: str) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format=format) for frame in container.decode(video=0)]


def stream_info(path: Path) -> tuple[str, str, str]:
    with av.open(str(path)) as container:
        context = container.streams.video[0].codec_context
        return context.name, context.pix_fmt, context.codec_tag


def test_one_video_file_of_the_kind_its_suffix_or_save_names(clip, tiny_weights, tmp_path):
    common = ("--matte", "hard")
    cases = {
        "cut.mov": (("--save", "alpha", "--prores-profile", "4444xq"), ("prores", "yuva444p12le", "ap4x")),
        "cut.webm": ((), ("vp9", "yuv420p", None)),
        "mask.mp4": ((), ("h264", "yuv420p", "avc1")),
        "mask.mkv": ((), ("ffv1", "gray", None)),
        "alpha.mkv": (("--save", "alpha"), ("ffv1", "bgra", None)),
        "green.mp4": (("--background", "green"), ("h264", "yuv420p", "avc1")),
    }
    for name, (args, (codec, pix_fmt, tag)) in cases.items():
        folder = tmp_path / name.replace(".", "-")
        folder.mkdir()
        result = segment(clip, tiny_weights, folder / name, *common, *args, "--json")
        assert result.returncode == 0, (name, result.stderr.decode())
        assert [path.name for path in folder.iterdir()] == [name], "exactly that one file, no folder, no temporary"
        assert (folder / name).is_file()
        assert list(json.loads(result.stdout)["outputs"].values()) == [str(folder / name)]
        info = stream_info(folder / name)
        assert info[:2] == (codec, pix_fmt) and (tag is None or info[2] == tag), (name, info)
        assert len(decoded(folder / name, "rgb24")) == FRAMES, name
    alphas = libvpx_alpha_planes(tmp_path / "cut-webm" / "cut.webm")
    assert len(alphas) == FRAMES and alphas[3].shape == (HEIGHT, WIDTH)
    rgba = decoded(tmp_path / "alpha-mkv" / "alpha.mkv", "rgba")[3]
    mask = decoded(tmp_path / "mask-mkv" / "mask.mkv", "gray")[3]
    assert 0 < (mask == 255).mean() < 1 and set(np.unique(mask)) == {0, 255}
    np.testing.assert_array_equal(rgba[..., 3], mask)  # lossless: the hard matte is the mask, pixel for pixel
    green = decoded(tmp_path / "green-mp4" / "green.mp4", "rgb24")[3].astype(int)
    assert np.abs(green[mask == 0] - (0, 255, 0)).mean() < 12, "the composite, not the mask video"


def test_what_one_file_cannot_hold_is_refused_in_one_line(clip, tiny_weights, tmp_path):
    existing = tmp_path / "taken.mov"
    existing.write_bytes(b"keep me")
    cases = [
        (("--save", "masks,alpha"), "x.mov", "one kind"),
        (("--save", "alpha"), "x.mp4", "MP4 cannot carry alpha"),
        (("--save", "masks"), "x.mp4", "folder of PNGs"),
        (("--save", "probs"), "x.mkv", "folder of PNGs"),
        (("--save", "alpha-webm"), "x.mov", ".webm"),
        (("--save", "overlay"), "x.webm", ".mp4"),
        ((), "taken.mov", "--overwrite"),
        (("--crf", "52"), "x.mp4", "--crf"),
        (("--prores-profile", "hq"), "x.mov", "4444xq"),
        (("--save", "composite"), "x.mp4", "--background"),
    ]
    for args, name, expected in cases:
        result = segment(clip, tiny_weights, tmp_path / name, *args)
        message = one_line_error(result)
        assert result.returncode == 2 and expected in message, (args, name, message)
    assert existing.read_bytes() == b"keep me"
    batch = run("segment", str(clip), str(clip.with_name("other.mp4")), "-o", str(tmp_path / "x.mov"))
    assert batch.returncode == 2 and "several videos need a folder" in one_line_error(batch)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["taken.mov"]


def test_alpha_formats_one_by_one_with_their_quality(clip, tiny_weights, tmp_path):
    folder = tmp_path / "looks-like-a-file.mov"
    folder.mkdir()  # an existing folder stays a folder, whatever its name
    result = segment(clip, tiny_weights, folder, "--save", "alpha-webm,alpha-png", "--crf", "50",
                     "--prores-profile", "4444xq", quiet=False)
    assert result.returncode == 0, result.stderr.decode()
    assert sorted(path.name for path in folder.iterdir()) == [".hmhi-input.json", ".hmhi-settings.json", "alpha",
                                                              "alpha.webm"]
    assert "--prores-profile has no effect" in result.stderr.decode()
    assert len(list((folder / "alpha").glob("*.png"))) == FRAMES
    best = tmp_path / "best.webm"
    assert segment(clip, tiny_weights, best, "--crf", "4").returncode == 0
    assert (folder / "alpha.webm").stat().st_size * 2 < best.stat().st_size, "CRF 50 is much smaller than CRF 4"


def make_background(path: Path, size: tuple[int, int] = (40, 64), fps: int = 7) -> list[np.ndarray]:
    """A 2-frame portrait H.264 video of two different DAVIS scenes at 7 fps; return its decoded frames."""
    images = [sorted((DAVIS / "JPEGImages" / "480p" / sequence).glob("*.jpg"))[0] for sequence in ("dog", "cows")]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"bf": "0", "crf": "0"})
        stream.width, stream.height, stream.pix_fmt = *size, "yuv444p"
        for index, image in enumerate(images):
            rgb = cv2.cvtColor(cv2.resize(cv2.imread(str(image)), size), cv2.COLOR_BGR2RGB)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return decoded(path, "rgb24")


def test_video_background_foreground_and_matte_with_composite(clip, tiny_weights, tmp_path):
    background = make_background(tmp_path / "back.mp4")
    out = tmp_path / "out"
    result = segment(clip, tiny_weights, out, "--save", "alpha,composite,foreground", "--background",
                     str(tmp_path / "back.mp4"), "--matte", "hard", "--choke", "2", "--crf", "1")
    assert result.returncode == 0, result.stderr.decode()
    assert sorted(path.name for path in out.iterdir()) == [".hmhi-input.json", ".hmhi-settings.json", "alpha",
                                                           "alpha.mov", "alpha.webm", "composite.mp4", "foreground",
                                                           "foreground.mov"]
    with av.open(str(clip)) as container:
        times = [float(frame.pts * frame.time_base) for frame in container.decode(video=0)]
    # the 2-frame background lasts 2/7 s: frames at 0..1/7 show its first image, then its second, then it loops
    shown = [int((time % (2 / 7)) * 7) for time in times]
    assert shown == [0, 0, 0, 0, 1, 1, 0, 0]
    composites = decoded(out / "composite.mp4", "rgb24")
    assert len(composites) == FRAMES
    for index, (composite, which) in enumerate(zip(composites, shown)):
        alpha = cv2.imread(str(out / "alpha" / f"{index:05d}.png"), cv2.IMREAD_UNCHANGED)[..., 3]
        clear = cv2.erode((alpha == 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert clear.mean() > 0.2, index
        errors = [np.abs(composite[clear].astype(int) - cover(frame, HEIGHT, WIDTH)[clear]).mean() for frame in background]
        assert errors[which] < 6 and errors[1 - which] > 3 * errors[which], (index, errors)
    for index in (0, FRAMES - 1):
        straight = cv2.cvtColor(cv2.imread(str(out / "alpha" / f"{index:05d}.png"), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)
        layer = cv2.cvtColor(cv2.imread(str(out / "foreground" / f"{index:05d}.png"), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)
        np.testing.assert_array_equal(layer[..., 3], straight[..., 3])  # the choked matte, as the alpha outputs have it
        opaque, clear = straight[..., 3] == 255, straight[..., 3] == 0
        np.testing.assert_array_equal(layer[opaque], straight[opaque])
        assert not layer[clear][:, :3].any(), "the object only: clear pixels are black"
    foreground_mov = decoded(out / "foreground.mov", "rgba")[0].astype(int)
    alpha_mov = decoded(out / "alpha.mov", "rgba")[0].astype(int)
    clear = alpha_mov[..., 3] < 8
    assert alpha_mov[clear][:, :3].mean() > 40 and foreground_mov[clear][:, :3].mean() < 4, "foreground.mov premultiplied"


def test_background_player_loops_a_video_and_covers_the_frame(tmp_path):
    from hmhi_cli.video import parse_background

    frames = make_background(tmp_path / "back.mp4", size=(64, 40))  # landscape 64x40, 2 frames at 7 fps
    player = parse_background(str(tmp_path / "back.mp4")).player(20, 20)
    try:
        shown = [player.at(seconds) for seconds in (0.0, 0.15, 0.3, 0.44, 2.05)]
    finally:
        player.close()
    expected = [cover(frames[index], 20, 20) for index in (0, 1, 0, 1, 0)]  # 2.05 s: 7 passes of 2/7 s, then frame 0
    for image, wanted in zip(shown, expected):
        assert image.shape == (20, 20, 3)
        np.testing.assert_array_equal(image, wanted)
    wide = np.zeros((10, 40, 3), np.uint8)
    wide[:, :10], wide[:, 30:] = 255, 255  # white quarters at both ends: cropped away equally
    centre = cover(wide, 10, 20)
    assert centre.shape == (10, 20, 3) and not centre.any()


def test_one_file_is_locked_against_a_second_run_and_a_killed_runs_temporary_file_is_cleaned(clip, tiny_weights,
                                                                                               tmp_path):
    import fcntl
    import os

    debris = tmp_path / ".cut.mov.k1ll3d.part.mov"
    debris.write_bytes(b"half of a ProRes file")
    result = segment(clip, tiny_weights, tmp_path / "cut.mov", "--save", "alpha")
    assert result.returncode == 0, result.stderr.decode()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cut.mov"], "the temporary file and the lock are gone"

    lock = os.open(tmp_path / ".busy.mov.hmhi-segment.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a run writing busy.mov holds it
    try:
        held = segment(clip, tiny_weights, tmp_path / "busy.mov", "--save", "alpha")
    finally:
        os.close(lock)
    assert held.returncode == 1
    assert "another hmhi run is writing to" in one_line_error(held) and "busy.mov" in one_line_error(held)
    assert not (tmp_path / "busy.mov").exists()
