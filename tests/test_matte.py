"""The matte an editor gets: the guided filter against its definition, choke/feather/invert, and,
measured on real DAVIS frames through the CLI with the default weights, a refined matte that is
opaque well inside the object and clear well outside, where the raw soft map is not."""

from __future__ import annotations

import io
import math
import shutil
import subprocess
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from hmhi_cli.errors import InputError
from hmhi_cli.evaluation import boundary_f_measure
from hmhi_cli.matte import FrameMatte, MatteSettings, binary_mask, finish, guided_filter, refine
from test_segment import DAVIS, clip, libvpx_alpha_planes, one_line_error, run, tiny_weights  # noqa: F401

WELL_INSIDE = 5
"""Pixels from the ground-truth boundary beyond which the matte must be opaque (inside) or clear (outside)."""
OPAQUE, CLEAR = 240, 15
needs_davis = pytest.mark.skipif(not DAVIS.exists(), reason="../shared/davis16-dev absent")


def naive_guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, epsilon: float) -> np.ndarray:
    """The guided filter by its definition, window by window: a ridge regression of ``source`` on the
    guide's colours in every window, the fits covering a pixel averaged and applied to its colour.
    Only pixels whose covering windows all lie inside the image are filled (the rest are NaN)."""
    height, width = source.shape
    colours = guide.astype(np.float64) / 255
    fits = np.full((height, width, 4), np.nan)
    side = 2 * radius + 1
    for y in range(radius, height - radius):
        for x in range(radius, width - radius):
            window = colours[y - radius:y + radius + 1, x - radius:x + radius + 1].reshape(-1, 3)
            values = source[y - radius:y + radius + 1, x - radius:x + radius + 1].ravel().astype(np.float64)
            centred = window - window.mean(axis=0)
            covariance = centred.T @ centred / side**2
            slope = np.linalg.solve(covariance + epsilon * np.eye(3), centred.T @ (values - values.mean()) / side**2)
            fits[y, x] = (*slope, values.mean() - slope @ window.mean(axis=0))
    output = np.full((height, width), np.nan)
    for y in range(2 * radius, height - 2 * radius):
        for x in range(2 * radius, width - 2 * radius):
            mean_fit = fits[y - radius:y + radius + 1, x - radius:x + radius + 1].reshape(-1, 4).mean(axis=0)
            output[y, x] = mean_fit[:3] @ colours[y, x] + mean_fit[3]
    return output


def test_guided_filter_is_the_guided_filter():
    rng = np.random.default_rng(0)
    guide = cv2.GaussianBlur(rng.integers(0, 256, (28, 34, 3), dtype=np.uint8), (0, 0), 1.5)
    source = rng.random((28, 34)).astype(np.float32)
    expected = naive_guided_filter(guide, source, 2, 1e-3)
    filtered = guided_filter(guide, source, 2, 1e-3)
    inside = ~np.isnan(expected)
    assert inside.sum() > 200
    np.testing.assert_allclose(filtered[inside], expected[inside], atol=1e-4)
    if hasattr(cv2, "ximgproc"):  # OpenCV contrib's implementation, borders included
        reference = cv2.ximgproc.guidedFilter(guide, source, 2, 1e-3 * 255**2)
        np.testing.assert_allclose(filtered, reference, atol=1e-4)


def disc_matte(radius: float, size: int = 96) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    return np.where(np.hypot(y - size / 2, x - size / 2) <= radius, 255, 0).astype(np.uint8)


def opaque_radius(matte: np.ndarray) -> float:
    return math.sqrt(np.count_nonzero(matte > 127) / math.pi)


def test_choke_feather_and_invert_move_and_soften_the_edge_by_the_pixels_asked():
    matte = disc_matte(20)
    assert finish(matte, MatteSettings()) is matte
    assert opaque_radius(finish(matte, MatteSettings(choke=4))) == pytest.approx(16, abs=0.5)
    assert opaque_radius(finish(matte, MatteSettings(choke=-4))) == pytest.approx(24, abs=0.5)
    feathered = finish(matte, MatteSettings(feather=6))
    assert opaque_radius(feathered) == pytest.approx(20, abs=0.5), "feathering keeps the edge where it was"
    row = feathered[48, 48:].astype(int)
    soft = np.flatnonzero((row > CLEAR) & (row < OPAQUE))
    assert 8 <= soft.size <= 14 and soft.min() >= 20 - 7 and soft.max() <= 20 + 7
    inverted = finish(matte, MatteSettings(choke=4, invert=True))
    np.testing.assert_array_equal(inverted, 255 - finish(matte, MatteSettings(choke=4)))


def test_matte_settings_are_checked():
    for bad in (dict(kind="fuzzy"), dict(choke=201), dict(choke=-201), dict(feather=-1), dict(feather=201)):
        with pytest.raises(InputError):
            MatteSettings(**bad)


def test_frame_matte_masks_are_the_refined_mattes_above_half():
    rng = np.random.default_rng(1)
    rgb = cv2.GaussianBlur(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8), (0, 0), 2)
    probability = cv2.GaussianBlur(disc_matte(18, 80)[:60].astype(np.float32) / 255, (0, 0), 4)
    frame = FrameMatte(probability, rgb, MatteSettings(kind="hard", invert=True), 0.5)
    np.testing.assert_array_equal(frame.mask, binary_mask(refine(probability, rgb)))
    np.testing.assert_array_equal(frame.alpha, 255 - frame.mask)
    low_res = cv2.resize(probability, (40, 30), interpolation=cv2.INTER_AREA)
    assert (refine(low_res, rgb) != frame.refined).mean() < 0.05, "a soft map at the model's size is resized"


# --- measured on real frames, through the CLI ---------------------------------------------------

MEASURED = {"dog": (range(20, 28), 0.93, 0.995), "breakdance": (range(20, 28), 0.80, 0.90)}
"""Sequences and frames of davis16-dev the matte is measured on, with the least fraction of opaque
pixels well inside and of clear pixels well outside. Measured with the default weights (fine-tuned
at 288, their input size, for 1000 steps): dog 0.54 and 0.989 raw, 0.96 and 0.9991 refined;
breakdance (spectators behind the dancer) 0.37 and 0.86 raw, 0.87 and 0.947 refined. The first weights
(trained at 256) gave 0.88 and 0.932 on breakdance at 288, 0.86 and 0.947 at 256 and 0.87 and
0.913 at 320: the larger the input, the more of the spectators they took in. What stays not
opaque inside is mostly what the model misses."""


def frames_folder(root: Path, sequence: str, indices: range) -> Path:
    folder = root / sequence
    folder.mkdir(parents=True)
    for position, index in enumerate(indices):
        shutil.copy(DAVIS / "JPEGImages" / "480p" / sequence / f"{index:05d}.jpg", folder / f"{position:05d}.jpg")
    return folder


def truth(sequence: str, index: int) -> np.ndarray:
    return cv2.imread(str(DAVIS / "Annotations" / "480p" / sequence / f"{index:05d}.png"), cv2.IMREAD_GRAYSCALE) > 0


def matte_scores(alphas: list[np.ndarray], truths: list[np.ndarray]) -> dict[str, float]:
    """Fraction of opaque pixels well inside the objects, of clear ones well outside, and mean boundary F."""
    opaque, inside, clear, outside, boundary = 0, 0, 0, 0, []
    for alpha, mask in zip(alphas, truths):
        object_pixels = mask.astype(np.uint8)
        well_inside = cv2.distanceTransform(object_pixels, cv2.DIST_L2, 5) >= WELL_INSIDE
        well_outside = cv2.distanceTransform(1 - object_pixels, cv2.DIST_L2, 5) >= WELL_INSIDE
        opaque += np.count_nonzero(alpha[well_inside] >= OPAQUE)
        inside += np.count_nonzero(well_inside)
        clear += np.count_nonzero(alpha[well_outside] <= CLEAR)
        outside += np.count_nonzero(well_outside)
        boundary.append(boundary_f_measure(mask, alpha > 127))
    return {"opaque": opaque / inside, "clear": clear / outside, "F": float(np.mean(boundary))}


def read_alpha_pngs(folder: Path) -> list[np.ndarray]:
    return [cv2.imread(str(path), cv2.IMREAD_UNCHANGED) for path in sorted(folder.glob("*.png"))]


@needs_davis
@pytest.mark.slow
@pytest.mark.parametrize("sequence", sorted(MEASURED))
def test_the_cutout_is_opaque_inside_and_clear_outside(sequence, tmp_path):
    indices, least_opaque, least_clear = MEASURED[sequence]
    out = tmp_path / "out"
    result = run("segment", str(frames_folder(tmp_path, sequence, indices)), "-o", str(out),
                 "--save", "alpha,probs,masks", "-q")
    assert result.returncode == 0, result.stderr.decode()
    truths = [truth(sequence, index) for index in indices]
    rgba = read_alpha_pngs(out / "alpha")
    refined = matte_scores([image[..., 3] for image in rgba], truths)
    raw = matte_scores(read_alpha_pngs(out / "probs"), truths)
    assert refined["opaque"] >= least_opaque and refined["opaque"] >= raw["opaque"] + 0.2, (raw, refined)
    assert refined["clear"] >= least_clear and refined["clear"] >= raw["clear"] + 0.005, (raw, refined)
    assert refined["F"] >= raw["F"] - 0.01, (raw, refined)
    for image, mask in zip(rgba, read_alpha_pngs(out / "masks")):
        np.testing.assert_array_equal(mask, binary_mask(image[..., 3]))
    webm = libvpx_alpha_planes(out / "alpha.webm")
    assert matte_scores(webm, truths)["opaque"] >= refined["opaque"] - 0.01, "alpha.webm carries the matte"


# --- the options, through the CLI (tiny weights) ------------------------------------------------


ONE_MODEL_THREAD = {"OMP_NUM_THREADS": "1"}
"""For runs compared with each other pixel for pixel: the model's thread count otherwise follows the
machine's load (:mod:`hmhi_cli.runtime`), and its rounding, which may flip a pixel at the threshold."""


def segment(clip: Path, weights: Path, out: Path, *more: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run("segment", str(clip), "-o", str(out), "--weights", str(weights), "--flow", "dis", "-q", *more, env=env)


@needs_davis
def test_matte_options_reach_every_alpha_output(clip, tiny_weights, tmp_path):
    soft = segment(clip, tiny_weights, tmp_path / "soft", "--save", "alpha,probs,masks", "--matte", "soft")
    assert soft.returncode == 0, soft.stderr.decode()
    probs = read_alpha_pngs(tmp_path / "soft" / "probs")
    masks = read_alpha_pngs(tmp_path / "soft" / "masks")
    for image, prob in zip(read_alpha_pngs(tmp_path / "soft" / "alpha"), probs):
        np.testing.assert_array_equal(image[..., 3], prob)

    hard = segment(clip, tiny_weights, tmp_path / "hard", "--save", "alpha,masks", "--matte", "hard", "--invert",
                   env=ONE_MODEL_THREAD)
    assert hard.returncode == 0, hard.stderr.decode()
    masks = read_alpha_pngs(tmp_path / "hard" / "masks")
    for image, mask in zip(read_alpha_pngs(tmp_path / "hard" / "alpha"), masks):
        np.testing.assert_array_equal(image[..., 3], 255 - mask)
    for plane, mask in zip(libvpx_alpha_planes(tmp_path / "hard" / "alpha.webm"), masks):
        assert (np.abs(plane.astype(int) - (255 - mask)) > 127).mean() < 0.01

    stream = run("segment", str(clip), "-o", "-", "--weights", str(tiny_weights), "--flow", "dis", "-q",
                 "--save", "alpha", "--matte", "hard", "--choke", "2", env=ONE_MODEL_THREAD)
    assert stream.returncode == 0, stream.stderr.decode()
    with av.open(io.BytesIO(stream.stdout)) as container:
        streamed = [frame.to_ndarray(format="rgba")[..., 3] for frame in container.decode(video=0)]
    for alpha, mask in zip(streamed, masks):
        np.testing.assert_array_equal(alpha, finish(mask, MatteSettings(kind="hard", choke=2)))

    composite = segment(clip, tiny_weights, tmp_path / "green", "--save", "alpha", "--background", "#00ff00",
                        "--matte", "hard", "--invert")
    assert composite.returncode == 0, composite.stderr.decode()
    with av.open(str(tmp_path / "green" / "composite.mp4")) as container:
        frames = [frame.to_ndarray(format="rgb24").astype(int) for frame in container.decode(video=0)]
    for rgb, mask in zip(frames, masks):
        green = (rgb[..., 1] > 200) & (rgb[..., 0] < 60) & (rgb[..., 2] < 60)
        inverted_object = cv2.erode(255 - mask, np.ones((5, 5), np.uint8)) > 0
        background = cv2.erode(mask, np.ones((5, 5), np.uint8)) > 0
        assert green[background].mean() > 0.95 and green[inverted_object].mean() < 0.5


@needs_davis
def test_bad_matte_values_give_one_line_and_unused_ones_a_warning(clip, tiny_weights, tmp_path):
    for bad, says in ((("--matte", "fuzzy"), "unknown matte"), (("--choke", "300"), "--choke"),
                      (("--feather", "-2"), "--feather")):
        result = segment(clip, tiny_weights, tmp_path / "bad", "--save", "alpha", *bad)
        assert result.returncode == 2 and says in one_line_error(result)
        assert not (tmp_path / "bad").exists()
    unused = run("segment", str(clip), "-o", str(tmp_path / "masks"), "--weights", str(tiny_weights), "--flow", "dis",
                 "--save", "masks", "--feather", "3")
    assert unused.returncode == 0, unused.stderr.decode()
    assert "--feather" in unused.stderr.decode() and "no effect without --save alpha" in unused.stderr.decode()

