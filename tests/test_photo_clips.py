"""Scale-robust views and photo clips: geometry checked on drawn shapes, the sampler on a photo set."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hmhi_cli.data.photos import MaskQuality, is_photo_set, load_photo_set, mask_is_usable
from hmhi_cli.errors import InputError
from hmhi_cli.training.data import ClipSampler, DatasetSpec
from hmhi_cli.training.photo_clips import PhotoClipConfig, make_photo_clip, paint_out
from hmhi_cli.training.views import ViewConfig, apply_view, random_view


def disc_photo(height: int = 120, width: int = 160, radius: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """A red disc on a grey photo, and its mask (float, 1 on the disc)."""
    image = np.full((height, width, 3), 120, np.uint8)
    mask = np.zeros((height, width), np.uint8)
    cv2.circle(mask, (width // 2, height // 2), radius, 1, -1)
    image[mask > 0] = (230, 20, 20)
    return image, mask.astype(np.float32)


def is_red(frame: np.ndarray) -> np.ndarray:
    red, green, blue = (frame[..., i].astype(int) for i in range(3))
    return (red > 180) & (green < 80) & (blue < 80)


def write_photo_set(root: Path, count: int) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for index in range(count):
        image, mask = disc_photo(radius=20 + 3 * index)
        cv2.imwrite(str(root / "images" / f"p{index}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "masks" / f"p{index}.png"), (mask * 255).astype(np.uint8))
    return root


def test_no_view_unless_asked():
    rng = np.random.default_rng(0)
    assert random_view(ViewConfig(probability=0.0), 100, 100, None, rng) is None
    frames = [np.zeros((4, 4, 3), np.uint8)]
    assert apply_view(None, frames, frames, [np.zeros((4, 4), np.uint8)])[0] is frames


def test_zoom_out_shrinks_the_object_and_pads():
    image, mask = disc_photo()
    config = ViewConfig(probability=1.0, zoom_out_probability=1.0, zoom_out_scale=(0.5, 0.5), aspect=(1.0, 1.0))
    matrix = random_view(config, *mask.shape, mask, np.random.default_rng(1))
    frames, neighbours, masks = apply_view(matrix, [image], [image], [mask.astype(np.uint8)])
    assert frames[0].shape == image.shape and masks[0].shape == mask.shape
    assert masks[0].sum() == pytest.approx(mask.sum() * 0.25, rel=0.1)
    assert np.array_equal(is_red(frames[0]), masks[0] > 0) or (is_red(frames[0]) != (masks[0] > 0)).mean() < 0.01
    assert np.array_equal(frames[0], neighbours[0])


def test_crops_zoom_in_around_the_object():
    image, mask = disc_photo()
    config = ViewConfig(probability=1.0, zoom_out_probability=0.0, crop_side=(0.5, 0.5), aspect=(1.0, 1.0),
                        keep_object_probability=1.0)
    for seed in range(5):
        matrix = random_view(config, *mask.shape, mask, np.random.default_rng(seed))
        assert matrix[0, 0] == pytest.approx(2.0) and matrix[1, 1] == pytest.approx(2.0)
        _, _, masks = apply_view(matrix, [image], [image], [mask.astype(np.uint8)])
        assert masks[0].sum() > mask.sum() * 0.5, "the object is kept, and larger"


def test_photo_clip_moves_the_object_with_its_mask():
    image, mask = disc_photo()
    background = np.zeros((200, 300, 3), np.uint8)
    background[..., 2] = 200
    config = PhotoClipConfig(same_scene_probability=0.0, object_size=(0.3, 0.3), object_speed=(0.04, 0.04),
                             camera_speed=(0.0, 0.0), camera_zoom=0.0, object_rotation=0.0, object_scale_change=0.0)
    frames, masks = make_photo_clip(image, mask, background, 4, config, np.random.default_rng(3))
    assert len(frames) == len(masks) == 4
    assert frames[0].shape[1] == config.long_side, "the canvas takes the background's aspect"
    centres = []
    for frame, frame_mask in zip(frames, masks):
        red = is_red(frame)
        assert (red != (frame_mask > 0)).mean() < 0.01, "the mask is where the object is drawn"
        ys, xs = np.nonzero(frame_mask)
        centres.append((xs.mean(), ys.mean()))
    steps = np.diff(np.array(centres), axis=0)
    assert np.allclose(np.hypot(*steps.T), 0.04 * frames[0].shape[0], atol=1.5)


def test_same_scene_clip_paints_the_object_out_of_its_background():
    image, mask = disc_photo()
    filled = paint_out(image, mask)
    assert is_red(filled).mean() < 0.002 and not is_red(image[:5]).any()
    config = PhotoClipConfig(same_scene_probability=1.0, object_speed=(0.05, 0.05))
    frames, masks = make_photo_clip(image, mask, image, 3, config, np.random.default_rng(0))
    assert masks[0].sum() == pytest.approx((mask > 0.5).sum() * (config.long_side / image.shape[1]) ** 2, rel=0.05)
    assert (is_red(frames[2]) & (masks[2] == 0)).mean() < 0.01, "no second copy of the object"


def test_mask_quality_screen():
    _, mask = disc_photo()
    assert mask_is_usable(mask)
    assert not mask_is_usable(np.zeros_like(mask)) and not mask_is_usable(np.ones_like(mask))
    scattered = np.zeros((100, 100), np.float32)
    scattered[::10, ::10] = 1.0
    scattered[40:50, 40:50] = 1.0
    assert not mask_is_usable(scattered, MaskQuality(min_area=0.001))
    unsure = mask * 0.55
    assert not mask_is_usable(unsure)


def test_photo_set_layout(tmp_path):
    root = write_photo_set(tmp_path / "set", 3)
    (root / "images" / "unlabelled.jpg").write_bytes((root / "images" / "p0.jpg").read_bytes())
    assert is_photo_set(root) and not is_photo_set(tmp_path)
    assert [photo.image.stem for photo in load_photo_set(root)] == ["p0", "p1", "p2"]
    with pytest.raises(InputError):
        load_photo_set(tmp_path)


def test_sampler_draws_moving_clips_from_photos(tmp_path):
    root = write_photo_set(tmp_path / "set", 3)
    sampler = ClipSampler([DatasetSpec(root)], size=64, clip_length=3, seed=2, view_probability=0.5)
    first, again = sampler.batch(4, 2), sampler.batch(4, 2)
    assert torch.equal(first.images, again.images) and torch.equal(first.flows, again.flows)
    assert first.images.shape == (2, 3, 3, 64, 64) and first.masks.shape == (2, 3, 1, 64, 64)
    assert (first.masks.flatten(2).sum(2) > 0).all(), "every frame shows the object"
    assert first.flows.std() > 0, "the object or the camera moves"


def test_sampler_computes_flow_on_the_viewed_frames(tmp_path, monkeypatch):
    root = write_photo_set(tmp_path / "set", 2)
    sampler = ClipSampler([DatasetSpec(root)], size=64, clip_length=2, seed=0, view_probability=1.0,
                          flip_probability=0.0, photometric=False)
    seen = []
    original = sampler.estimator.flow_image
    monkeypatch.setattr(sampler.estimator, "flow_image",
                        lambda a, b, size: seen.append(a.copy()) or original(a, b, size))
    views = []
    import hmhi_cli.training.data as data

    real_apply = data.apply_view
    monkeypatch.setattr(data, "apply_view", lambda *args: views.append(real_apply(*args)) or views[-1])
    sampler.batch(0, 1)
    assert len(seen) == 2 and all(np.array_equal(a, b) for a, b in zip(seen, views[0][0]))
