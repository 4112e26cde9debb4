"""Tests for hmhi_cli.data.synthetic: determinism, exact masks, exact flow, DAVIS-layout output."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from hmhi_cli.data.synthetic import SyntheticClipConfig, iter_clips, make_clip, write_clip
from hmhi_cli.errors import InputError, OutputError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DAVIS_FRAMES = SHARED / "davis16-dev" / "JPEGImages" / "480p"

CLEAN = dict(shading=0.0, shadow_probability=0.0, blur_probability=0.0, noise_std=(0.0, 0.0), photometric_jitter=0.0)
"""Settings that turn off every effect that changes colours, so frames follow the layers exactly."""


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))


def test_same_seed_gives_identical_clips_and_iter_clips_resumes() -> None:
    config = SyntheticClipConfig(size=(64, 80), num_frames=3, num_distractors=(1, 2))
    first = make_clip(config, np.random.default_rng(7))
    second = make_clip(config, np.random.default_rng(7))
    other = make_clip(config, np.random.default_rng(8))
    for name in ("frames", "masks", "flow"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert not np.array_equal(first.frames, other.frames)

    two = list(itertools.islice(iter_clips(config, seed=3), 2))
    resumed = next(iter_clips(config, seed=3, start=1))
    np.testing.assert_array_equal(two[1].frames, resumed.frames)
    assert not np.array_equal(two[0].frames, two[1].frames)
    default_seed = next(iter_clips(dataclasses.replace(config, seed=3)))
    np.testing.assert_array_equal(default_seed.masks, two[0].masks)


def test_shapes_dtypes_and_masks_never_empty() -> None:
    config = SyntheticClipConfig(size=(72, 96), num_frames=4, num_distractors=(3, 4))
    for clip in itertools.islice(iter_clips(config, seed=11), 12):
        assert clip.frames.shape == (4, 72, 96, 3) and clip.frames.dtype == np.uint8
        assert clip.masks.shape == (4, 72, 96) and clip.masks.dtype == np.uint8
        assert clip.flow.shape == (4, 72, 96, 2) and clip.flow.dtype == np.float32
        assert set(np.unique(clip.masks)) <= {0, 1}
        assert np.isfinite(clip.flow).all()
        assert (clip.masks.reshape(4, -1).sum(axis=1) > 0).all()


def test_mask_is_exactly_where_the_flat_object_colour_shows() -> None:
    config = SyntheticClipConfig(size=(96, 128), num_frames=3, num_distractors=(0, 0),
                                 texture_kinds={"flat": 1.0}, **CLEAN)
    for clip in itertools.islice(iter_clips(config, seed=5), 4):
        for frame, mask in zip(clip.frames.astype(np.int32), clip.masks.astype(bool)):
            object_colour = _most_common(frame[mask])
            background_colour = _most_common(frame[~mask])
            assert np.linalg.norm(object_colour - background_colour) >= config.min_contrast - 1
            exact_object = (frame == object_colour).all(-1)
            exact_background = (frame == background_colour).all(-1)
            assert mask[exact_object].all() and not mask[exact_background].any()
            # Edge pixels blend both colours; the mask takes those nearer to the object colour.
            to_object = np.linalg.norm(frame - object_colour, axis=-1)
            to_background = np.linalg.norm(frame - background_colour, axis=-1)
            nearer_object = to_object < to_background
            tie = np.abs(to_object - to_background) <= 0.02 * np.linalg.norm(object_colour - background_colour)
            assert not (nearer_object != mask)[~tie].any()
            assert tie.sum() <= 0.002 * mask.size


def _most_common(pixels: np.ndarray) -> np.ndarray:
    colours, counts = np.unique(pixels.reshape(-1, 3), axis=0, return_counts=True)
    return colours[counts.argmax()]


def test_mask_leaves_out_distractors_in_front() -> None:
    config = SyntheticClipConfig(size=(96, 128), num_frames=3, num_distractors=(5, 6), distractor_scale=(0.15, 0.25),
                                 texture_kinds={"flat": 1.0}, **CLEAN)
    window = np.ones((5, 5), np.uint8)
    for clip in itertools.islice(iter_clips(config, seed=9), 6):
        for frame, mask in zip(clip.frames, clip.masks):
            object_colour = _most_common(frame[mask.astype(bool)])
            # Away from every soft edge (flat 5x5 neighbourhood), a mask pixel shows the object's colour.
            flat = (cv2.erode(frame, window) == cv2.dilate(frame, window)).all(-1)
            assert (flat & mask.astype(bool)).any()
            assert (frame[flat & mask.astype(bool)] == object_colour).all()
            assert not (frame[flat & ~mask.astype(bool)] == object_colour).all(-1).any()


def test_flow_moves_the_mask_onto_the_next_mask_for_translations() -> None:
    config = SyntheticClipConfig(size=(192, 224), num_frames=4, num_distractors=(0, 0), object_scale=(0.25, 0.3),
                                 object_rotation=0.0, object_scale_change=0.0, background_zoom=0.0,
                                 background_rotation=0.0, **CLEAN)
    height, width = config.size
    xs, ys = _grid(height, width)
    for clip in itertools.islice(iter_clips(config, seed=21), 3):
        for t in range(config.num_frames - 1):
            mask = clip.masks[t].astype(bool)
            target_x = np.round(xs[mask] + clip.flow[t, ..., 0][mask]).astype(int)
            target_y = np.round(ys[mask] + clip.flow[t, ..., 1][mask]).astype(int)
            inside = (target_x >= 0) & (target_x < width) & (target_y >= 0) & (target_y < height)
            moved = np.zeros_like(mask)
            moved[target_y[inside], target_x[inside]] = True
            # Compare only where frame t saw the scene: parts entering through the border are new.
            vector = clip.flow[t][mask]
            seen = (xs - vector[0, 0] >= 0) & (xs - vector[0, 0] <= width - 1)
            seen &= (ys - vector[0, 1] >= 0) & (ys - vector[0, 1] <= height - 1)
            following = clip.masks[t + 1].astype(bool) & seen
            assert (moved & following).sum() / (moved | following).sum() > 0.95
            # The object only translates: one flow vector; shifting the mask by it sub-pixel exactly.
            assert np.ptp(vector, axis=0).max() < 1e-3
            shift = np.float32([[1, 0, vector[0, 0]], [0, 1, vector[0, 1]]])
            shifted = cv2.warpAffine(mask.astype(np.float32), shift, (width, height), flags=cv2.INTER_LINEAR) >= 0.5
            assert (shifted & following).sum() / (shifted | following).sum() > 0.97


def test_flow_matches_frames_under_rotation_zoom_and_occlusion() -> None:
    config = SyntheticClipConfig(size=(96, 128), num_frames=4, num_distractors=(1, 3), object_rotation=5.0,
                                 object_scale_change=0.03, background_zoom=0.02, background_rotation=1.0,
                                 background_speed=(0.01, 0.03), texture_kinds={"noise": 1.0, "gradient": 1.0},
                                 **CLEAN)
    height, width = config.size
    xs, ys = _grid(height, width)
    for clip in itertools.islice(iter_clips(config, seed=2), 3):
        for t in range(config.num_frames):
            partner = t + 1 if t + 1 < config.num_frames else t - 1
            map_x, map_y = xs + clip.flow[t, ..., 0], ys + clip.flow[t, ..., 1]
            inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
            pulled = cv2.remap(clip.frames[partner].astype(np.float32), map_x, map_y, cv2.INTER_LINEAR)
            error = np.abs(pulled - clip.frames[t]).mean(-1)[inside]
            still_error = np.abs(clip.frames[partner].astype(np.float32) - clip.frames[t]).mean(-1)
            assert np.median(error) < 1.5
            assert error.mean() < 0.25 * still_error.mean()


def test_write_clip_makes_a_davis_layout_readable_by_opencv(tmp_path: Path) -> None:
    config = SyntheticClipConfig(size=(48, 64), num_frames=3, texture_kinds={"gradient": 1.0}, **CLEAN)
    clip = make_clip(config, np.random.default_rng(0))
    image_dir = write_clip(clip, tmp_path, name="blob-01")
    assert image_dir == tmp_path / "JPEGImages" / "480p" / "blob-01"
    mask_dir = tmp_path / "Annotations" / "480p" / "blob-01"
    assert sorted(p.name for p in image_dir.iterdir()) == ["00000.jpg", "00001.jpg", "00002.jpg"]
    assert sorted(p.name for p in mask_dir.iterdir()) == ["00000.png", "00001.png", "00002.png"]
    for t in range(3):
        frame = cv2.cvtColor(cv2.imread(str(image_dir / f"{t:05d}.jpg")), cv2.COLOR_BGR2RGB)
        mask = cv2.imread(str(mask_dir / f"{t:05d}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.dtype == np.uint8 and mask.shape == (48, 64)
        np.testing.assert_array_equal(mask, clip.masks[t] * 255)
        assert np.abs(frame.astype(np.int32) - clip.frames[t]).mean() < 3.0
        assert np.abs(frame[..., ::-1].astype(np.int32) - clip.frames[t]).mean() > 6.0
    with pytest.raises(OutputError, match="invalid clip name"):
        write_clip(clip, tmp_path, name="../escape")


def test_photo_textures_are_rgb_crops_of_the_given_images(tmp_path: Path) -> None:
    colour = (200, 40, 90)
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((50, 70, 3), colour[::-1], np.uint8))
    config = SyntheticClipConfig(size=(64, 64), num_frames=2, texture_kinds={"photo": 1.0},
                                 texture_images=(photo,), **CLEAN)
    clip = make_clip(config, np.random.default_rng(1))
    assert (clip.frames == np.array(colour, np.uint8)).all()

    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    with pytest.raises(InputError, match="broken.jpg"):
        make_clip(dataclasses.replace(config, texture_images=(broken,)), np.random.default_rng(1))


@pytest.mark.skipif(not DAVIS_FRAMES.is_dir(), reason=f"DAVIS frames not found under {DAVIS_FRAMES}")
def test_davis_frames_as_textures() -> None:
    images = tuple(sorted(DAVIS_FRAMES.glob("*/00000.jpg")))
    config = SyntheticClipConfig(size=(96, 96), num_frames=3, texture_kinds={"photo": 1.0}, texture_images=images)
    for clip in itertools.islice(iter_clips(config, seed=4), 3):
        assert clip.frames.shape == (3, 96, 96, 3)
        assert (clip.masks.reshape(3, -1).sum(axis=1) > 0).all()
        assert clip.frames.std() > 5.0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_frames": 1}, "at least 2 frames"),
        ({"size": (8, 64)}, "at least 16x16"),
        ({"texture_kinds": {"marble": 1.0}}, "unknown kind"),
        ({"texture_kinds": {"photo": 1.0}}, "needs texture_images"),
        ({"object_speed": (0.05, 0.01)}, "object_speed"),
        ({"texture_images": ("/nonexistent/frame.jpg",)}, "/nonexistent/frame.jpg"),
    ],
)
def test_bad_configs_raise_input_errors(changes: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        SyntheticClipConfig(**changes)
