"""Benchmark metrics against hand-computed values, and the evaluation protocol on small fake datasets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from hmhi_cli.errors import InputError
from hmhi_cli.evaluation import (
    boundary_f_measure,
    boundary_map,
    boundary_tolerance,
    disk,
    evaluate,
    read_annotation,
    read_prediction,
    region_similarity,
    sequence_statistics,
)


def square(shape: tuple[int, int], top: int, left: int, side: int = 10) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def outline(shape: tuple[int, int], top: int, left: int, bottom: int, right: int) -> np.ndarray:
    """The one-pixel outline of the rectangle with these inclusive corners."""
    mask = np.zeros(shape, dtype=bool)
    mask[top, left : right + 1] = mask[bottom, left : right + 1] = True
    mask[top : bottom + 1, left] = mask[top : bottom + 1, right] = True
    return mask


def boundary_by_definition(mask: np.ndarray) -> np.ndarray:
    """seg2bmap pixel by pixel: compare with the right, lower and lower-right neighbours that exist."""
    height, width = mask.shape
    inside = lambda y, x: bool(mask[y, x]) if y < height and x < width else False  # noqa: E731
    edges = np.zeros_like(mask, dtype=bool)
    for y in range(height):
        for x in range(width):
            if y == height - 1 and x == width - 1:
                continue
            if y == height - 1:
                neighbours = [(y, x + 1)]
            elif x == width - 1:
                neighbours = [(y + 1, x)]
            else:
                neighbours = [(y, x + 1), (y + 1, x), (y + 1, x + 1)]
            edges[y, x] = any(inside(*n) != bool(mask[y, x]) for n in neighbours)
    return edges


# --- J -----------------------------------------------------------------------------------------

EMPTY = np.zeros((50, 50), dtype=bool)
FULL = np.ones((50, 50), dtype=bool)


def test_region_similarity_edge_cases() -> None:
    assert region_similarity(EMPTY, EMPTY) == 1.0
    assert region_similarity(FULL, EMPTY) == 0.0
    assert region_similarity(FULL, FULL) == 1.0


def test_region_similarity_of_shifted_square() -> None:
    # 10x10 squares two columns apart: 8 shared columns -> 80 / (100 + 100 - 80)
    assert region_similarity(square((50, 50), 10, 10), square((50, 50), 10, 12)) == pytest.approx(2 / 3)
    # one column apart: 90 / 110
    assert region_similarity(square((50, 50), 10, 10), square((50, 50), 10, 11)) == pytest.approx(9 / 11)


def test_shape_mismatch_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        region_similarity(EMPTY, np.zeros((50, 51), dtype=bool))


# --- boundaries and F --------------------------------------------------------------------------


def test_boundary_of_square_is_outline_grown_up_and_left() -> None:
    mask = square((50, 50), 10, 10)  # rows and columns 10..19
    np.testing.assert_array_equal(boundary_map(mask), outline((50, 50), 9, 9, 19, 19))
    assert boundary_map(mask).sum() == 40


def test_boundary_matches_definition_on_random_masks() -> None:
    rng = np.random.default_rng(7)
    for height, width in ((1, 1), (1, 7), (6, 1), (9, 13), (17, 11)):
        mask = rng.random((height, width)) < 0.5
        np.testing.assert_array_equal(boundary_map(mask), boundary_by_definition(mask))
    assert not boundary_map(FULL).any()  # a full mask has no boundary (edges of the image do not count)
    edge_touching = np.zeros((6, 6), dtype=bool)
    edge_touching[:, 3:] = True
    np.testing.assert_array_equal(boundary_map(edge_touching), boundary_by_definition(edge_touching))


def test_boundary_tolerance_and_disk() -> None:
    assert boundary_tolerance((480, 854)) == 8  # ceil(0.008 * 979.6)
    assert boundary_tolerance((50, 50)) == 1  # ceil(0.008 * 70.7)
    assert boundary_tolerance((100, 100)) == 2  # ceil(0.008 * 141.4)
    assert boundary_tolerance((100, 100), bound_th=3) == 3
    expected = np.array(
        [[0, 0, 1, 0, 0], [0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0]], dtype=np.uint8
    )
    np.testing.assert_array_equal(disk(2), expected)


def test_boundary_f_measure_edge_cases() -> None:
    block = square((50, 50), 10, 10)
    assert boundary_f_measure(EMPTY, EMPTY) == 1.0
    assert boundary_f_measure(block, EMPTY) == 0.0  # ground-truth boundary, none predicted
    assert boundary_f_measure(EMPTY, block) == 0.0
    assert boundary_f_measure(FULL, FULL) == 1.0
    # the toolkit's quirk: a mask filling the frame has no boundary, so it matches an empty one
    assert boundary_f_measure(FULL, EMPTY) == 1.0
    assert boundary_f_measure(block, block) == 1.0


def test_boundary_f_measure_of_square_shifted_two_pixels() -> None:
    # 50x50: tolerance 1 pixel, i.e. the 4-neighbourhood. Outlines 9..19 (truth) and 9..19 x 11..21
    # (prediction). Predicted top and bottom rows: 10 of 11 pixels within 1 of the truth outline;
    # predicted left column (x=11, rows 10..18): only rows 10 and 18 touch the truth's top/bottom
    # rows; predicted right column (x=21): none. Precision = (10+10+2+0)/40 = 0.55; recall is the
    # mirror image, so F = 0.55.
    truth, predicted = square((50, 50), 10, 10), square((50, 50), 10, 12)
    assert boundary_f_measure(truth, predicted) == pytest.approx(0.55)
    # 100x100: tolerance 2 pixels, every boundary pixel is within reach
    assert boundary_f_measure(square((100, 100), 10, 10), square((100, 100), 10, 12)) == 1.0
    # a one-pixel shift is within a 1-pixel tolerance
    assert boundary_f_measure(truth, square((50, 50), 10, 11)) == 1.0


# --- statistics --------------------------------------------------------------------------------


def test_sequence_statistics_known_example() -> None:
    scores = [1, 1, 1, 0.2, 0.2, 0.2, 0.6, 0.6, 0.4, 0.4]
    statistics = sequence_statistics(scores)
    assert statistics.mean == pytest.approx(0.56)
    assert statistics.recall == pytest.approx(0.5)  # 1, 1, 1, 0.6, 0.6 are above 0.5
    # bin edges round(linspace(1, 10, 5)) - 1 = 0, 2, 5, 7, 9: first bin frames 0..2, last bin 7..9
    assert statistics.decay == pytest.approx(1 - (0.6 + 0.4 + 0.4) / 3)


def test_sequence_statistics_short_sequences() -> None:
    assert sequence_statistics([0.9, 0.3]).decay == pytest.approx(0.6)
    single = sequence_statistics([0.7])
    assert (single.mean, single.recall, single.decay) == (pytest.approx(0.7), 1.0, 0.0)
    assert sequence_statistics([0.5]).recall == 0.0  # strictly above 0.5
    with pytest.raises(ValueError):
        sequence_statistics([])


# --- reading masks -----------------------------------------------------------------------------


def test_prediction_reading(tmp_path: Path) -> None:
    grey = np.array([[127, 128], [0, 255]], dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    np.testing.assert_array_equal(read_prediction(tmp_path / "grey.png", (2, 2)), grey)
    colour = np.zeros((2, 2, 3), dtype=np.uint8)
    colour[0, 0] = (0, 0, 128)  # BGR dark red, DAVIS palette colour 1
    cv2.imwrite(str(tmp_path / "colour.png"), colour)
    assert (read_prediction(tmp_path / "colour.png", (2, 2)) > 127).tolist() == [[True, False], [False, False]]
    deep = np.full((2, 2), 65535, dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    assert (read_prediction(tmp_path / "deep.png", (2, 2)) == 255).all()
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., :3] = 200  # transparent but white: the alpha channel is ignored
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    assert (read_prediction(tmp_path / "rgba.png", (2, 2)) == 200).all()
    small = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "small.png"), small)
    np.testing.assert_array_equal(read_prediction(tmp_path / "small.png", (4, 4)), np.kron(small, np.ones((2, 2))))


def test_palette_prediction(tmp_path: Path) -> None:
    image_module = pytest.importorskip("PIL.Image")
    palette_image = image_module.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8), mode="P")
    palette_image.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)
    palette_image.save(tmp_path / "palette.png")
    assert (read_prediction(tmp_path / "palette.png", (2, 2)) > 127).tolist() == [[False, True], [True, False]]


def test_annotation_reading(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "labels.png"), np.array([[0, 1], [255, 0]], dtype=np.uint8))
    assert read_annotation(tmp_path / "labels.png").tolist() == [[False, True], [True, False]]
    cv2.imwrite(str(tmp_path / "lossy.jpg"), np.array([[0] * 8 + [255] * 8] * 16, dtype=np.uint8))
    lossy = read_annotation(tmp_path / "lossy.jpg")
    assert not lossy[:, :6].any() and lossy[:, 10:].all()
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read image: .*broken.png"):
        read_annotation(tmp_path / "broken.png")


# --- the protocol on a fake DAVIS tree ----------------------------------------------------------

SHAPE = (24, 32)
FRAMES = 6


def truth_mask(index: int) -> np.ndarray:
    return square(SHAPE, 4 + index, 3 + 2 * index, side=8)


def write_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.where(mask, 255, 0).astype(np.uint8))


@pytest.fixture()
def davis_tree(tmp_path: Path) -> Path:
    root = tmp_path / "davis"
    for seq in ("alpha", "beta", "short"):
        count = 2 if seq == "short" else FRAMES
        for index in range(count):
            frame = root / f"JPEGImages/480p/{seq}/{index:05d}.jpg"
            frame.parent.mkdir(parents=True, exist_ok=True)
            frame.write_bytes(b"")
            write_mask(root / f"Annotations/480p/{seq}/{index:05d}.png", truth_mask(index))
    return root


@pytest.fixture()
def predictions(tmp_path: Path) -> Path:
    """alpha: perfect except an empty first frame; beta: perfect with frame 2 missing."""
    pred = tmp_path / "pred"
    for index in range(FRAMES):
        write_mask(pred / f"alpha/{index:05d}.png", truth_mask(index) if index else np.zeros(SHAPE, dtype=bool))
        if index != 2:
            write_mask(pred / f"beta/{index:05d}.png", truth_mask(index))
    return pred


def test_davis_protocol(davis_tree: Path, predictions: Path) -> None:
    calls: list[tuple[int, int, str]] = []
    result = evaluate(
        davis_tree, predictions, sequences=["alpha", "beta"], progress_callback=lambda *call: calls.append(call)
    )
    alpha, beta = result.sequences
    assert alpha.frames == ["00001", "00002", "00003", "00004"]  # first and last left out
    assert (alpha.j.mean, alpha.f.mean, alpha.j.recall, alpha.j.decay) == (1.0, 1.0, 1.0, 0.0)
    assert beta.j_scores == [1.0, 0.0, 1.0, 1.0] and beta.f_scores == [1.0, 0.0, 1.0, 1.0]
    assert beta.j.mean == beta.f.mean == 0.75 and beta.j.recall == 0.75
    assert beta.j.decay == pytest.approx(0.5 - 1.0)  # bins over 4 frames: 0..1 and 2..3 (edges 0, 1, 2, 2, 3)
    assert result.missing == ["beta/00002.png"] and beta.missing == ["beta/00002.png"]
    assert result.j.mean == pytest.approx(0.875) and result.f.mean == pytest.approx(0.875)
    assert result.j_and_f == pytest.approx(0.875)
    assert calls[-1] == (8, 8, "beta") and [call[0] for call in calls] == list(range(1, 9))

    data = result.to_dict()
    assert list(data) == ["dataset", "J", "F", "J&F", "sequences", "missing"]
    assert data["dataset"] == "davis16"
    assert data["J"] == {"mean": 0.875, "recall": 0.875, "decay": pytest.approx(-0.25)}
    assert list(data["sequences"]) == ["alpha", "beta"]
    assert list(data["sequences"]["beta"]) == ["J", "F"]
    assert data["sequences"]["beta"]["F"]["mean"] == 0.75


def test_all_frames_keeps_first_and_last(davis_tree: Path, predictions: Path) -> None:
    result = evaluate(davis_tree, predictions, sequences=["alpha"], all_frames=True)
    (alpha,) = result.sequences
    assert len(alpha.frames) == FRAMES and alpha.j_scores[0] == 0.0
    assert alpha.j.mean == pytest.approx(5 / 6)


def test_resized_soft_prediction(davis_tree: Path, tmp_path: Path) -> None:
    pred = tmp_path / "soft"
    (pred / "alpha").mkdir(parents=True)
    for index in range(FRAMES):
        double = np.kron(truth_mask(index), np.ones((2, 2), dtype=bool))  # nearest downsampling restores it
        cv2.imwrite(str(pred / f"alpha/{index:05d}.png"), np.where(double, 200, 60).astype(np.uint8))
    result = evaluate(davis_tree, pred, sequences=["alpha"], all_frames=True)
    assert result.sequences[0].j_scores == [1.0] * FRAMES


def test_sparse_j_only_protocol(davis_tree: Path, predictions: Path, tmp_path: Path) -> None:
    result = evaluate(davis_tree, predictions, dataset="fbms", sequences=["alpha", "beta"])
    alpha, beta = result.sequences
    assert len(alpha.frames) == FRAMES  # every annotated frame, first and last included
    assert alpha.j.mean == pytest.approx(5 / 6) and alpha.f is None and alpha.f_scores is None
    assert result.f is None and result.j_and_f is None
    data = result.to_dict()
    assert data["F"] is None and data["J&F"] is None and data["sequences"]["beta"]["F"] is None

    result.write_csv(tmp_path / "out/fbms.csv")
    rows = list(csv.DictReader((tmp_path / "out/fbms.csv").open()))
    assert [row["sequence"] for row in rows] == ["alpha", "beta", "mean"]
    assert rows[0]["F_mean"] == "" and float(rows[2]["J_mean"]) == pytest.approx(result.j.mean)
    assert rows[2]["frames"] == str(2 * FRAMES) and rows[2]["missing"] == "1"


def test_json_round_trip(davis_tree: Path, predictions: Path, tmp_path: Path) -> None:
    result = evaluate(davis_tree, predictions, sequences=["alpha", "beta"])
    target = tmp_path / "results/eval.json"
    result.write_json(target)
    assert json.loads(target.read_text()) == result.to_dict()
    assert [path.name for path in target.parent.iterdir()] == ["eval.json"]  # no temporary file left


def test_vsod_figures(davis_tree: Path, tmp_path: Path) -> None:
    pred = tmp_path / "vsod"
    for index in range(FRAMES):
        write_mask(pred / f"alpha/{index:05d}.png", truth_mask(index))
        write_mask(pred / f"beta/{index:05d}.png", np.zeros(SHAPE, dtype=bool))
    result = evaluate(davis_tree, pred, sequences=["alpha", "beta"], metrics="vsod")
    alpha, beta = result.sequences
    assert alpha.vsod.mae == 0.0
    assert alpha.vsod.max_f == pytest.approx(1.0) and alpha.vsod.s_measure == pytest.approx(1.0)
    pixels = SHAPE[0] * SHAPE[1]
    assert alpha.vsod.max_e == pytest.approx(pixels / (pixels - 1))  # py_sod_metrics divides by N - 1
    foreground_fraction = 64 / (SHAPE[0] * SHAPE[1])  # an empty map is wrong on the 8x8 square only
    assert beta.vsod.mae == pytest.approx(foreground_fraction)
    assert result.vsod.mae == pytest.approx(foreground_fraction / 2)
    assert result.vsod.s_measure == pytest.approx((alpha.vsod.s_measure + beta.vsod.s_measure) / 2)
    data = result.to_dict()
    assert list(data) == ["dataset", "J", "F", "J&F", "vsod", "sequences", "missing"]
    assert set(data["vsod"]) == {"mae", "max_f", "s_measure", "max_e"}
    assert list(data["sequences"]["alpha"]) == ["J", "F", "vsod"]


def test_evaluation_errors(davis_tree: Path, predictions: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown dataset 'davis17'"):
        evaluate(davis_tree, predictions, dataset="davis17")
    with pytest.raises(InputError, match="unknown metrics 'iou'"):
        evaluate(davis_tree, predictions, metrics="iou")
    with pytest.raises(InputError, match="prediction folder not found: .*nowhere"):
        evaluate(davis_tree, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no predictions found in .*empty"):
        evaluate(davis_tree, tmp_path / "empty", sequences=["alpha"])
    with pytest.raises(InputError, match="sequence short has no annotated frames to evaluate .*first and last"):
        evaluate(davis_tree, predictions, sequences=["short"])
