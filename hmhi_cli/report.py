"""Evaluation you can look at: contact sheets of each sequence's worst frames and an overview chart.

:func:`write_report` turns an :class:`~hmhi_cli.evaluation.EvaluationResult` into PNG files in
one folder:

``overview.png``
    Per-sequence J&F (J for J-only datasets) as horizontal bars, worst first, with the mean over
    sequences marked.
``worst-frames/<sequence>.png``
    The sequence's lowest-scoring frames, worst first: each frame with the ground-truth contour
    (green) and the predicted contour (magenta), captioned with the frame's name, J and F.

Frames are ranked by the per-frame scores the evaluation computed
(:attr:`~hmhi_cli.evaluation.SequenceResult.frame_scores`), and the contours are drawn from the
masks as the evaluation reads them. The report is replaced as a whole or not at all.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from hmhi_cli.data.layouts import Sequence, load_dataset
from hmhi_cli.errors import InputError, OutputError
from hmhi_cli.evaluation import (
    EvaluationResult,
    SequenceResult,
    foreground,
    prediction_grey,
    prediction_index,
    read_annotation,
)
from hmhi_cli.output_folder import OutputFolder
from hmhi_cli.video import write_image

OVERVIEW_NAME = "overview.png"
SHEET_FOLDER = "worst-frames"
WORST_FRAMES = 6
TILE_WIDTH = 320
COLUMNS = 3

GROUND_TRUTH_BGR = (0, 255, 0)
PREDICTION_BGR = (255, 0, 255)
CONTOUR_THICKNESS = 2

FONT = cv2.FONT_HERSHEY_SIMPLEX
TEXT_SCALE = 0.45
TITLE_SCALE = 0.55
MARGIN = 12
GAP = 4
CAPTION_HEIGHT = 22
LINE_HEIGHT = 22
SWATCH = 12

SHEET_BACKGROUND = (34, 34, 34)
SHEET_TEXT = (235, 235, 235)
CHART_BACKGROUND = (255, 255, 255)
CHART_TEXT = (30, 30, 30)
GRID_BGR = (220, 220, 220)
BAR_BGR = (180, 120, 60)
MEAN_BGR = (40, 40, 220)
BAR_AREA_WIDTH = 480
BAR_HEIGHT = 14
VALUE_WIDTH = 56
DASH = 4


@dataclass(frozen=True)
class SequenceSheet:
    """One contact sheet: where it was written and the frames it shows, worst first."""

    sequence: str
    path: Path
    frames: list[str]
    j_scores: list[float]
    f_scores: list[float] | None  # None for J-only datasets


@dataclass(frozen=True)
class Report:
    """The files :func:`write_report` wrote."""

    overview: Path
    sheets: list[SequenceSheet]


def worst_frames(sequence: SequenceResult, count: int = WORST_FRAMES) -> list[int]:
    """Indices into ``sequence.frames`` of its ``count`` lowest frame scores, worst first (ties: earlier first)."""
    scores = sequence.frame_scores
    return sorted(range(len(scores)), key=lambda index: (scores[index], index))[:count]


def existing_report_files(out_dir: str | os.PathLike) -> list[Path]:
    """Report files already in ``out_dir``: the overview and every contact sheet."""
    out_dir = Path(out_dir)
    overview = out_dir / OVERVIEW_NAME
    sheets = [path for path in (out_dir / SHEET_FOLDER).rglob("*.png") if not path.name.startswith(".")]
    return ([overview] if overview.exists() else []) + sorted(sheets)


def check_report_folder(out_dir: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse a report folder that is a file, or that holds a report already unless ``overwrite``."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"report folder is not a folder: {out_dir}")
    existing = existing_report_files(out_dir)
    if existing and not overwrite:
        raise OutputError(f"{out_dir} already holds a report ({existing[0]}); pass --overwrite to replace it")


def write_report(
    result: EvaluationResult,
    dataset_root: str | os.PathLike,
    pred_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    worst: int = WORST_FRAMES,
    overwrite: bool = False,
) -> Report:
    """Write the overview chart and one contact sheet per sequence of ``result`` into ``out_dir``.

    ``dataset_root`` and ``pred_root`` are those ``result`` was evaluated on; ``worst`` frames
    are shown per sequence. The report is written into a staging folder and renamed into place
    at the end, as a whole: a run that fails or is stopped leaves the report there was. An
    existing report is replaced only with ``overwrite`` (its sheets of sequences not in
    ``result`` go with it).
    """
    if worst < 1:
        raise InputError(f"the number of worst frames must be at least 1, got {worst}")
    out_dir = Path(out_dir)
    check_report_folder(out_dir, overwrite)
    loaded = load_dataset(dataset_root, sequences=[sequence.name for sequence in result.sequences])
    sequences = {sequence.name: sequence for sequence in loaded}
    overview, sheet_folder = out_dir / OVERVIEW_NAME, out_dir / SHEET_FOLDER
    with OutputFolder(out_dir) as folder:
        earlier = {path for path in (overview, sheet_folder) if os.path.lexists(path)}  # passed check_report_folder
        sheets = []
        for scored in result.sequences:
            chosen = worst_frames(scored, worst)
            name = f"{scored.name}.png"
            sheet = contact_sheet(scored, sequences[scored.name], pred_root, chosen)
            write_image(folder.staging / SHEET_FOLDER / name, sheet)
            sheets.append(
                SequenceSheet(
                    sequence=scored.name,
                    path=sheet_folder / name,
                    frames=[scored.frames[index] for index in chosen],
                    j_scores=[scored.j_scores[index] for index in chosen],
                    f_scores=None if scored.f_scores is None else [scored.f_scores[index] for index in chosen],
                )
            )
        write_image(folder.staging / OVERVIEW_NAME, overview_chart(result))
        folder.commit([overview, sheet_folder], overwrite, replaceable=earlier)
    return Report(overview=overview, sheets=sheets)


# --- contact sheets ----------------------------------------------------------------------------


def contact_sheet(
    scored: SequenceResult, sequence: Sequence, pred_root: str | os.PathLike, chosen: list[int]
) -> np.ndarray:
    """BGR picture of the frames ``chosen`` (indices into ``scored.frames``) in that order, under a title and legend."""
    frame_paths = {path.stem: path for path in sequence.frames}
    predictions = prediction_index(Path(pred_root) / scored.name)
    scores = scored.frame_scores
    tiles = []
    for index in chosen:
        stem = scored.frames[index]
        truth = read_annotation(sequence.annotations[stem])
        prediction_path = predictions.get(stem)
        predicted = foreground(prediction_grey(prediction_path, truth.shape))
        figures = [f"J {scored.j_scores[index]:.3f}"]
        if scored.f_scores is not None:
            figures = [f"J&F {scores[index]:.3f}", *figures, f"F {scored.f_scores[index]:.3f}"]
        missing = ["(missing)"] if prediction_path is None else []
        caption = "  ".join([stem, *figures, *missing])
        tiles.append(_tile(_read_frame(frame_paths[stem]), truth, predicted, caption))
    measure = "J" if scored.f_scores is None else "J&F"
    sequence_score = scored.j.mean if scored.j_and_f is None else scored.j_and_f
    title = f"{scored.name}: {len(chosen)} worst of {len(scored.frames)} frames by {measure}"
    title += f" ({measure} {sequence_score:.3f})"
    return _sheet(title, tiles)


def _read_frame(path: Path) -> np.ndarray:
    image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"cannot read image: {path}")
    return image


def _tile(frame: np.ndarray, truth: np.ndarray, predicted: np.ndarray, caption: str) -> np.ndarray:
    """The frame scaled to :data:`TILE_WIDTH` with both contours, over a caption strip."""
    scale = TILE_WIDTH / truth.shape[1]
    height = max(1, round(truth.shape[0] * scale))
    image = cv2.resize(frame, (TILE_WIDTH, height), interpolation=cv2.INTER_AREA)
    for mask, colour in ((truth, GROUND_TRUTH_BGR), (predicted, PREDICTION_BGR)):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        scaled = [np.round((contour + 0.5) * scale - 0.5).astype(np.int32) for contour in contours]
        cv2.drawContours(image, scaled, -1, colour, CONTOUR_THICKNESS, cv2.LINE_8)
    strip = np.full((CAPTION_HEIGHT, TILE_WIDTH, 3), SHEET_BACKGROUND, dtype=np.uint8)
    _put_text(strip, caption, (6, CAPTION_HEIGHT - 7), SHEET_TEXT)
    return np.vstack([image, strip])


def _sheet(title: str, tiles: list[np.ndarray]) -> np.ndarray:
    columns = min(COLUMNS, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    cell_height = max(tile.shape[0] for tile in tiles)
    header = MARGIN + 2 * LINE_HEIGHT
    grid_width = columns * TILE_WIDTH + (columns - 1) * GAP
    width = 2 * MARGIN + max(grid_width, _text_width(title, TITLE_SCALE, 2))
    height = header + rows * cell_height + (rows - 1) * GAP + MARGIN
    sheet = np.full((height, width, 3), SHEET_BACKGROUND, dtype=np.uint8)
    _put_text(sheet, title, (MARGIN, MARGIN + 14), SHEET_TEXT, TITLE_SCALE, 2)
    x = MARGIN
    for colour, label in ((GROUND_TRUTH_BGR, "ground truth"), (PREDICTION_BGR, "prediction")):
        x = _legend_entry(sheet, x, MARGIN + LINE_HEIGHT + 12, colour, label, SHEET_TEXT)
    for position, tile in enumerate(tiles):
        row, column = divmod(position, columns)
        top = header + row * (cell_height + GAP)
        left = MARGIN + column * (TILE_WIDTH + GAP)
        sheet[top : top + tile.shape[0], left : left + tile.shape[1]] = tile
    return sheet


# --- overview ----------------------------------------------------------------------------------


def overview_chart(result: EvaluationResult) -> np.ndarray:
    """BGR bar chart of per-sequence J&F (J for J-only datasets), worst first, with the mean marked."""
    measure = "J" if result.f is None else "J&F"
    entries = sorted(
        ((item.name, item.j.mean if item.j_and_f is None else item.j_and_f) for item in result.sequences),
        key=lambda entry: entry[1],
    )
    mean = result.j.mean if result.j_and_f is None else result.j_and_f
    label_width = max(_text_width(name, TEXT_SCALE) for name, _ in entries)
    bar_left = MARGIN + label_width + 10
    title_top = MARGIN + 16
    bars_top = title_top + 2 * LINE_HEIGHT
    axis_y = bars_top + len(entries) * LINE_HEIGHT + 4
    title = f"{result.dataset}: {measure} per sequence ({len(entries)} sequences), worst first"
    width = max(bar_left + BAR_AREA_WIDTH + VALUE_WIDTH, MARGIN + _text_width(title, TITLE_SCALE, 2)) + MARGIN
    height = axis_y + 20 + MARGIN
    chart = np.full((height, width, 3), CHART_BACKGROUND, dtype=np.uint8)

    def x_of(value: float) -> int:
        return bar_left + round(min(max(value, 0.0), 1.0) * BAR_AREA_WIDTH)

    _put_text(chart, title, (MARGIN, title_top), CHART_TEXT, TITLE_SCALE, 2)
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        cv2.line(chart, (x_of(tick), bars_top - 4), (x_of(tick), axis_y), GRID_BGR, 1)
        text = f"{tick:g}"
        _put_text(chart, text, (x_of(tick) - _text_width(text, TEXT_SCALE) // 2, axis_y + 16), CHART_TEXT)
    cv2.line(chart, (bar_left, axis_y), (bar_left + BAR_AREA_WIDTH, axis_y), CHART_TEXT, 1)
    for row, (_, value) in enumerate(entries):
        bar_top = bars_top + row * LINE_HEIGHT + (LINE_HEIGHT - BAR_HEIGHT) // 2
        cv2.rectangle(chart, (bar_left, bar_top), (x_of(value), bar_top + BAR_HEIGHT - 1), BAR_BGR, cv2.FILLED)
    for y in range(bars_top - 4, axis_y, 2 * DASH):
        cv2.line(chart, (x_of(mean), y), (x_of(mean), min(y + DASH, axis_y)), MEAN_BGR, 2)
    for row, (name, value) in enumerate(entries):
        baseline = bars_top + row * LINE_HEIGHT + (LINE_HEIGHT + BAR_HEIGHT) // 2 - 2
        _put_text(chart, name, (bar_left - 10 - _text_width(name, TEXT_SCALE), baseline), CHART_TEXT)
        _put_text(chart, f"{value:.3f}", (x_of(value) + 6, baseline), CHART_TEXT)
    legend_y = title_top + LINE_HEIGHT
    x = _legend_entry(chart, MARGIN, legend_y, BAR_BGR, f"{measure} of a sequence", CHART_TEXT)
    _legend_entry(chart, x, legend_y, MEAN_BGR, f"mean over sequences: {mean:.3f}", CHART_TEXT)
    return chart


# --- drawing helpers ---------------------------------------------------------------------------


def _text_width(text: str, scale: float, thickness: int = 1) -> int:
    return cv2.getTextSize(text, FONT, scale, thickness)[0][0]


def _put_text(
    image: np.ndarray, text: str, origin: tuple[int, int], colour: tuple[int, int, int],
    scale: float = TEXT_SCALE, thickness: int = 1,
) -> None:  # fmt: skip
    cv2.putText(image, text, origin, FONT, scale, colour, thickness, cv2.LINE_AA)


def _legend_entry(
    image: np.ndarray, x: int, baseline: int, colour: tuple[int, int, int], label: str,
    text_colour: tuple[int, int, int],
) -> int:  # fmt: skip
    """A colour swatch and its label at ``x``; return where the next entry starts."""
    cv2.rectangle(image, (x, baseline - SWATCH + 1), (x + SWATCH - 1, baseline), colour, cv2.FILLED)
    _put_text(image, label, (x + SWATCH + 6, baseline), text_colour)
    return x + SWATCH + 6 + _text_width(label, TEXT_SCALE) + 20

