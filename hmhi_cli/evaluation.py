"""Benchmark evaluation of predicted masks against a dataset's ground truth.

Protocols (``dataset``):

``davis16``
    Unsupervised single-object DAVIS-2016, computed as the DAVIS 2017 evaluation toolkit
    (davis2017-evaluation) does: region similarity J (IoU; 1 when both masks are empty) and
    boundary F-measure F (boundaries by the toolkit's ``seg2bmap``, matched within
    ``ceil(0.008 * image diagonal)`` pixels using a disk). Every annotated frame except the first
    and the last of the sequence is scored, unless ``all_frames``.
``fbms``, ``ytobj``
    J only, on the annotated (sparse) frames, first and last included.

Per sequence, each measure gets the toolkit's statistics: mean, recall (fraction of frames
scoring above 0.5) and decay (mean of the first quarter of the frames minus mean of the last
quarter, with the toolkit's overlapping bins). Dataset figures are means over sequences, and
``J&F`` is the mean of J mean and F mean. All numbers are fractions in 0..1.

``metrics="vsod"`` adds the video salient-object figures, computed by ``py_sod_metrics`` on the
same frames with soft maps read as 0..255 grey: MAE, max F-beta (beta^2 = 0.3), S-measure
(alpha = 0.5) and max E-measure. As in the Isomer / HMHI-Net VSOD evaluation, the F and E curves
(256 thresholds) and MAE and S are averaged over the frames of a sequence, then over sequences;
the maxima are taken last.

Predictions live in ``PRED/<seq>/<frame stem>.png`` (``.jpg``/``.jpeg`` also found; PNG wins), which
is also the layout the HMHI-Net and Isomer inference scripts write; YouTube-Objects sequences,
named ``<class>/<seq>``, nest one level deeper. A pixel is foreground when its value is above 127;
colour images use their brightest channel (so DAVIS palette index 1, dark red, counts) and an
alpha channel is ignored. A prediction whose size differs from the annotation's is resized with
nearest-neighbour sampling. A missing prediction is scored as an empty mask and listed in
:attr:`EvaluationResult.missing`. Ground-truth masks: any non-zero pixel is foreground (JPEG
masks, being lossy, are thresholded at 127 instead).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from hmhi_cli.atomic import write_text
from hmhi_cli.data.layouts import Sequence, load_dataset
from hmhi_cli.errors import InputError, WriteError

DATASETS = ("davis16", "fbms", "ytobj")
METRIC_SETS = ("jf", "vsod")
BOUNDARY_THRESHOLD = 0.008
FOREGROUND_THRESHOLD = 127
DECAY_BINS = 4
F_BETA_SQUARED = 0.3
PREDICTION_SUFFIXES = (".png", ".jpg", ".jpeg")

ProgressCallback = Callable[[int, int, str], None]
"""Called after every scored frame with (frames done, frames in total, sequence name)."""


# --- reading masks -----------------------------------------------------------------------------


def to_grey(image: np.ndarray) -> np.ndarray:
    """A single-channel uint8 view of a decoded mask: brightest colour channel, alpha dropped, 16 bit scaled."""
    if image.ndim == 3:
        colour = image[:, :, :1] if image.shape[2] == 2 else image[:, :, :3]
        image = colour.max(axis=2)
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    return image.astype(np.uint8, copy=False)


def read_grey(path: str | os.PathLike) -> np.ndarray:
    """Decode a mask image as single-channel uint8 (see :func:`to_grey`)."""
    image = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(f"cannot read image: {path}")
    return to_grey(image)


def read_annotation(path: str | os.PathLike) -> np.ndarray:
    """Ground-truth mask as a boolean array: non-zero pixels (above 127 for JPEG files)."""
    grey = read_grey(path)
    threshold = FOREGROUND_THRESHOLD if Path(path).suffix.lower() in (".jpg", ".jpeg") else 0
    return grey > threshold


def read_prediction(path: str | os.PathLike, shape: tuple[int, int]) -> np.ndarray:
    """Predicted mask or soft map as uint8 grey of ``shape`` (height, width), resized with nearest sampling."""
    grey = read_grey(path)
    if grey.shape != tuple(shape):
        grey = cv2.resize(grey, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return grey


def prediction_grey(path: str | os.PathLike | None, shape: tuple[int, int]) -> np.ndarray:
    """The prediction as scored: :func:`read_prediction`, or an all-zero map when ``path`` is None (missing)."""
    if path is None:
        return np.zeros(shape, dtype=np.uint8)
    return read_prediction(path, shape)


def foreground(grey: np.ndarray) -> np.ndarray:
    """The scored mask of a prediction map: pixels above :data:`FOREGROUND_THRESHOLD`."""
    return grey > FOREGROUND_THRESHOLD


def prediction_index(folder: Path) -> dict[str, Path]:
    """Prediction files of one sequence folder by stem; PNG preferred over JPEG, hidden files ignored."""
    if not folder.is_dir():
        return {}
    candidates = [
        path
        for path in folder.iterdir()
        if path.suffix.lower() in PREDICTION_SUFFIXES and not path.name.startswith(".") and path.is_file()
    ]
    candidates.sort(key=lambda path: PREDICTION_SUFFIXES.index(path.suffix.lower()))
    index: dict[str, Path] = {}
    for path in candidates:
        index.setdefault(path.stem, path)
    return index


# --- J and F -----------------------------------------------------------------------------------


def _check_same_shape(annotation: np.ndarray, segmentation: np.ndarray) -> None:
    if annotation.shape != segmentation.shape or annotation.ndim != 2:
        raise ValueError(f"masks must be 2-D and of one shape, got {annotation.shape} and {segmentation.shape}")


def region_similarity(annotation: np.ndarray, segmentation: np.ndarray) -> float:
    """J: intersection over union of two masks (non-zero = foreground); 1.0 when both are empty."""
    _check_same_shape(annotation, segmentation)
    truth, predicted = annotation.astype(bool), segmentation.astype(bool)
    union = np.count_nonzero(truth | predicted)
    if union == 0:
        return 1.0
    return np.count_nonzero(truth & predicted) / union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary of a mask, as the DAVIS toolkit's ``seg2bmap`` draws it.

    A pixel is on the boundary when it differs from its right, lower or lower-right neighbour
    (outside the image counts as background), except that in the last row only the right
    neighbour and in the last column only the lower neighbour count, and the bottom-right pixel
    never does. The boundary of a filled rectangle is thus the outline of that rectangle grown by
    one pixel up and left, and a mask filling the whole image has no boundary.
    """
    inside = mask.astype(bool)
    padded = np.pad(inside, ((0, 1), (0, 1)))
    right, below, below_right = padded[:-1, 1:], padded[1:, :-1], padded[1:, 1:]
    edges = (inside != right) | (inside != below) | (inside != below_right)
    edges[-1, :] = inside[-1, :] != right[-1, :]
    edges[:, -1] = inside[:, -1] != below[:, -1]
    edges[-1, -1] = False
    return edges


def boundary_tolerance(shape: tuple[int, int], bound_th: float = BOUNDARY_THRESHOLD) -> int:
    """Match distance in pixels: ``bound_th`` itself when >= 1, else ``ceil(bound_th * diagonal)``."""
    if bound_th >= 1:
        return int(bound_th)
    return math.ceil(bound_th * math.hypot(shape[0], shape[1]))


def disk(radius: int) -> np.ndarray:
    """Structuring element: the pixels within Euclidean distance ``radius`` of the centre (uint8)."""
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).astype(np.uint8)


def boundary_f_measure(
    annotation: np.ndarray, segmentation: np.ndarray, bound_th: float = BOUNDARY_THRESHOLD
) -> float:
    """F: harmonic mean of boundary precision and recall, boundaries matched within :func:`boundary_tolerance`.

    As in the toolkit, two masks without boundary pixels score 1.0, and a boundary on one side
    only scores 0.0.
    """
    _check_same_shape(annotation, segmentation)
    truth_edges, predicted_edges = boundary_map(annotation), boundary_map(segmentation)
    truth_count, predicted_count = np.count_nonzero(truth_edges), np.count_nonzero(predicted_edges)
    if truth_count == 0 and predicted_count == 0:
        return 1.0
    if truth_count == 0 or predicted_count == 0:
        return 0.0
    kernel = disk(boundary_tolerance(annotation.shape, bound_th))
    near_truth = cv2.dilate(truth_edges.astype(np.uint8), kernel) > 0
    near_predicted = cv2.dilate(predicted_edges.astype(np.uint8), kernel) > 0
    precision = np.count_nonzero(predicted_edges & near_truth) / predicted_count
    recall = np.count_nonzero(truth_edges & near_predicted) / truth_count
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


# --- statistics --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statistics:
    """Mean, recall and decay of one measure."""

    mean: float
    recall: float
    decay: float

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "recall": self.recall, "decay": self.decay}

    @staticmethod
    def average(items: list[Statistics]) -> Statistics:
        """Field-wise mean, as the dataset figure over sequences."""
        return Statistics(
            mean=float(np.mean([item.mean for item in items])),
            recall=float(np.mean([item.recall for item in items])),
            decay=float(np.mean([item.decay for item in items])),
        )


def sequence_statistics(scores: list[float] | np.ndarray) -> Statistics:
    """The toolkit's per-sequence statistics of per-frame scores.

    Decay splits the frames into four overlapping bins whose edges are
    ``round(linspace(1, n, 5)) - 1`` (each bin runs from its edge to the next one, inclusive),
    and subtracts the mean of the last bin from the mean of the first.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no scores")
    edges = np.round(np.linspace(1, values.size, DECAY_BINS + 1) + 1e-10).astype(int) - 1
    first, last = values[edges[0] : edges[1] + 1], values[edges[-2] : edges[-1] + 1]
    return Statistics(
        mean=float(values.mean()),
        recall=float(np.mean(values > 0.5)),
        decay=float(first.mean() - last.mean()),
    )


# --- VSOD --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VsodScores:
    """Video salient-object figures."""

    mae: float
    max_f: float
    s_measure: float
    max_e: float

    def to_dict(self) -> dict[str, float]:
        return {"mae": self.mae, "max_f": self.max_f, "s_measure": self.s_measure, "max_e": self.max_e}


@dataclass(frozen=True)
class _VsodSequence:
    mae: float
    f_curve: np.ndarray
    s_measure: float
    e_curve: np.ndarray

    def scores(self) -> VsodScores:
        return VsodScores(self.mae, float(self.f_curve.max()), self.s_measure, float(self.e_curve.max()))


class _VsodAccumulator:
    """Feeds frames of one sequence to the ``py_sod_metrics`` evaluators."""

    def __init__(self) -> None:
        import py_sod_metrics as sod

        self._mae = sod.MAE()
        self._f = sod.FmeasureV2(
            {"fm": sod.FmeasureHandler(with_dynamic=True, with_adaptive=False, beta=F_BETA_SQUARED)}
        )
        self._s = sod.Smeasure()
        self._e = sod.Emeasure()

    def add(self, prediction_grey: np.ndarray, annotation: np.ndarray) -> None:
        truth = np.where(annotation, 255, 0).astype(np.uint8)
        for evaluator in (self._mae, self._f, self._s, self._e):
            evaluator.step(pred=prediction_grey, gt=truth)

    def result(self) -> _VsodSequence:
        return _VsodSequence(
            mae=float(self._mae.get_results()["mae"]),
            f_curve=np.asarray(self._f.get_results()["fm"]["dynamic"], dtype=np.float64),
            s_measure=float(self._s.get_results()["sm"]),
            e_curve=np.asarray(self._e.get_results()["em"]["curve"], dtype=np.float64),
        )


def _dataset_vsod(sequences: list[_VsodSequence]) -> VsodScores:
    return VsodScores(
        mae=float(np.mean([item.mae for item in sequences])),
        max_f=float(np.mean([item.f_curve for item in sequences], axis=0).max()),
        s_measure=float(np.mean([item.s_measure for item in sequences])),
        max_e=float(np.mean([item.e_curve for item in sequences], axis=0).max()),
    )


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SequenceResult:
    """Scores of one sequence; ``f`` is None for J-only datasets, ``vsod`` unless asked for.

    ``frames`` names the scored frames (stems) in order; ``j_scores`` and ``f_scores`` are their
    per-frame J and F.
    """

    name: str
    frames: list[str]
    j_scores: list[float]
    f_scores: list[float] | None
    j: Statistics
    f: Statistics | None
    vsod: VsodScores | None
    missing: list[str]

    @property
    def j_and_f(self) -> float | None:
        return None if self.f is None else (self.j.mean + self.f.mean) / 2

    @property
    def frame_scores(self) -> list[float]:
        """Per-frame (J + F) / 2, or J alone for J-only datasets: the score frames are ranked by."""
        if self.f_scores is None:
            return list(self.j_scores)
        return [(j + f) / 2 for j, f in zip(self.j_scores, self.f_scores)]

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"J": self.j.to_dict(), "F": None if self.f is None else self.f.to_dict()}
        if self.vsod is not None:
            entry["vsod"] = self.vsod.to_dict()
        return entry


@dataclass(frozen=True)
class EvaluationResult:
    """Everything :func:`evaluate` measured."""

    dataset: str
    metrics: str
    sequences: list[SequenceResult]
    missing: list[str]  # prediction files (relative to the prediction root) scored as empty
    vsod: VsodScores | None

    @property
    def j(self) -> Statistics:
        return Statistics.average([sequence.j for sequence in self.sequences])

    @property
    def f(self) -> Statistics | None:
        if any(sequence.f is None for sequence in self.sequences):
            return None
        return Statistics.average([sequence.f for sequence in self.sequences])

    @property
    def j_and_f(self) -> float | None:
        f = self.f
        return None if f is None else (self.j.mean + f.mean) / 2

    def to_dict(self) -> dict[str, Any]:
        """``{"dataset", "J", "F", "J&F", ["vsod"], "sequences", "missing"}``.

        F and J&F are None for the J-only datasets; ``missing`` lists prediction files scored as empty.
        """
        f = self.f
        data: dict[str, Any] = {
            "dataset": self.dataset,
            "J": self.j.to_dict(),
            "F": None if f is None else f.to_dict(),
            "J&F": self.j_and_f,
        }
        if self.vsod is not None:
            data["vsod"] = self.vsod.to_dict()
        data["sequences"] = {sequence.name: sequence.to_dict() for sequence in self.sequences}
        data["missing"] = list(self.missing)
        return data

    def write_json(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` as JSON, atomically."""
        _write_output(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def csv_rows(self) -> list[dict[str, Any]]:
        """One row per sequence, then a row named ``mean`` with the dataset figures."""
        rows = [
            _csv_row(s.name, s.j, s.f, s.j_and_f, s.vsod, len(s.frames), len(s.missing)) for s in self.sequences
        ]
        frames = sum(len(sequence.frames) for sequence in self.sequences)
        rows.append(_csv_row("mean", self.j, self.f, self.j_and_f, self.vsod, frames, len(self.missing)))
        return rows

    def write_csv(self, path: str | os.PathLike) -> None:
        """Write :meth:`csv_rows` as CSV, atomically; J-only datasets leave the F cells empty."""
        rows = self.csv_rows()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        _write_output(path, buffer.getvalue())


def _csv_row(
    name: str,
    j: Statistics,
    f: Statistics | None,
    j_and_f: float | None,
    vsod: VsodScores | None,
    frames: int,
    missing: int,
) -> dict[str, Any]:
    row: dict[str, Any] = {"sequence": name}
    for label, statistics in (("J", j), ("F", f)):
        for key in ("mean", "recall", "decay"):
            row[f"{label}_{key}"] = "" if statistics is None else getattr(statistics, key)
    row["J&F"] = "" if j_and_f is None else j_and_f
    if vsod is not None:
        row.update(vsod.to_dict())
    row["frames"] = frames
    row["missing"] = missing
    return row


def _write_output(path: str | os.PathLike, text: str) -> None:
    try:
        write_text(path, text)
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from exc


# --- evaluation --------------------------------------------------------------------------------


def _scored_frames(sequence: Sequence, dataset: str, all_frames: bool) -> list[Path]:
    frames = sequence.frames
    if dataset == "davis16" and not all_frames:
        frames = frames[1:-1]
    scored = [frame for frame in frames if frame.stem in sequence.annotations]
    if not scored:
        hint = ""
        if dataset == "davis16":
            hint = " (the first and last frames are left out unless all frames are asked for)"
        raise InputError(f"sequence {sequence.name} has no annotated frames to evaluate{hint}")
    return scored


def _evaluate_sequence(
    sequence: Sequence,
    frames: list[Path],
    pred_root: Path,
    with_boundary: bool,
    with_vsod: bool,
    frame_done: Callable[[str], None],
) -> tuple[SequenceResult, _VsodSequence | None, int]:
    """Score one sequence; also return its raw VSOD curves and how many predictions were found."""
    predictions = prediction_index(pred_root / sequence.name)
    vsod = _VsodAccumulator() if with_vsod else None
    j_scores: list[float] = []
    f_scores: list[float] = []
    missing: list[str] = []
    for frame in frames:
        annotation = read_annotation(sequence.annotations[frame.stem])
        prediction_path = predictions.get(frame.stem)
        if prediction_path is None:
            missing.append(f"{sequence.name}/{frame.stem}.png")
        grey = prediction_grey(prediction_path, annotation.shape)
        segmentation = foreground(grey)
        j_scores.append(region_similarity(annotation, segmentation))
        if with_boundary:
            f_scores.append(boundary_f_measure(annotation, segmentation))
        if vsod is not None:
            vsod.add(grey, annotation)
        frame_done(sequence.name)
    vsod_curves = vsod.result() if vsod is not None else None
    result = SequenceResult(
        name=sequence.name,
        frames=[frame.stem for frame in frames],
        j_scores=j_scores,
        f_scores=f_scores if with_boundary else None,
        j=sequence_statistics(j_scores),
        f=sequence_statistics(f_scores) if with_boundary else None,
        vsod=vsod_curves.scores() if vsod_curves is not None else None,
        missing=missing,
    )
    return result, vsod_curves, len(frames) - len(missing)


def evaluate(
    dataset_root: str | os.PathLike,
    pred_root: str | os.PathLike,
    dataset: str = "davis16",
    sequences: list[str] | None = None,
    all_frames: bool = False,
    metrics: str = "jf",
    progress_callback: ProgressCallback | None = None,
) -> EvaluationResult:
    """Score the predictions under ``pred_root`` against the dataset at ``dataset_root``.

    ``dataset`` picks the protocol (:data:`DATASETS`), ``sequences`` limits the evaluation to
    those names, ``all_frames`` keeps the first and last DAVIS frames, ``metrics="vsod"`` adds
    the VSOD figures. See the module documentation for the rules.
    """
    if dataset not in DATASETS:
        raise InputError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    if metrics not in METRIC_SETS:
        raise InputError(f"unknown metrics {metrics!r}; expected one of {', '.join(METRIC_SETS)}")
    pred_root = Path(pred_root).expanduser()
    if not pred_root.is_dir():
        raise InputError(f"prediction folder not found: {pred_root}")
    loaded = load_dataset(dataset_root, sequences=sequences)
    plans = [(sequence, _scored_frames(sequence, dataset, all_frames)) for sequence in loaded]
    total = sum(len(frames) for _, frames in plans)
    done = 0

    def frame_done(name: str) -> None:
        nonlocal done
        done += 1
        if progress_callback is not None:
            progress_callback(done, total, name)

    results: list[SequenceResult] = []
    vsod_sequences: list[_VsodSequence] = []
    found = 0
    for sequence, frames in plans:
        result, vsod_curves, found_here = _evaluate_sequence(
            sequence, frames, pred_root, dataset == "davis16", metrics == "vsod", frame_done
        )
        results.append(result)
        if vsod_curves is not None:
            vsod_sequences.append(vsod_curves)
        found += found_here
    if found == 0:
        raise InputError(
            f"no predictions found in {pred_root} (expected <sequence>/<frame>.png for the evaluated frames)"
        )
    return EvaluationResult(
        dataset=dataset,
        metrics=metrics,
        sequences=results,
        missing=[path for result in results for path in result.missing],
        vsod=_dataset_vsod(vsod_sequences) if vsod_sequences else None,
    )
