"""``hmhi eval --report``: worst-frame contact sheets and an overview chart, on real DAVIS-16 frames.

The predictions are the ground truth, eroded; in blackswan six frames are also shifted sideways
by known amounts (the larger the shift, the lower J and F), and one dog frame is missing.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_cli_eval import DAVIS_DEV, expected_scores, predicted, run_hmhi, truth, write_predictions
from test_weights import call_cli

from hmhi_cli.evaluation import evaluate
from hmhi_cli.report import (
    BAR_AREA_WIDTH,
    BAR_BGR,
    BAR_HEIGHT,
    GROUND_TRUTH_BGR,
    MEAN_BGR,
    PREDICTION_BGR,
    TILE_WIDTH,
    write_report,
)

SEQUENCES = ("blackswan", "dog")
SHIFTS = {"00005": 60, "00012": 50, "00020": 40, "00031": 30, "00040": 20, "00044": 10}  # blackswan, worst first
MISSING_FRAME = "00030"  # dog
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CONTOUR_PIXELS = 1000  # far more than a legend swatch (144 pixels)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DAVIS_DEV.is_dir(), reason=f"shared DAVIS-16 sample not found at {DAVIS_DEV}"),
]


@pytest.fixture(scope="module")
def predictions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eroded masks; blackswan's shifted sideways on the SHIFTS frames; dog's MISSING_FRAME missing."""
    kernel = np.ones((5, 5), dtype=np.uint8)

    def image_for(seq: str, stem: str, mask: np.ndarray) -> np.ndarray | None:
        if seq == "dog" and stem == MISSING_FRAME:
            return None
        eroded = cv2.erode(mask, kernel)
        return np.roll(eroded, SHIFTS.get(stem, 0), axis=1) if seq == "blackswan" else eroded

    return write_predictions(tmp_path_factory.mktemp("pred"), SEQUENCES, image_for)


def colour_pixels(image: np.ndarray, bgr: tuple[int, int, int]) -> int:
    return int(np.count_nonzero(np.all(image == np.array(bgr, dtype=np.uint8), axis=2)))


def read_png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return image


def eval_report(predictions: Path, report: Path, *extra: str) -> tuple[int, str, str]:
    completed = run_hmhi(
        "eval", "--dataset", "davis16", "--root", str(DAVIS_DEV), "--pred", str(predictions),
        "--report", str(report), "--quiet", *extra,
    )  # fmt: skip
    return completed.returncode, completed.stdout, completed.stderr


def test_report_pictures_through_the_cli(predictions: Path, tmp_path: Path) -> None:
    report = tmp_path / "not/yet/there"
    code, stdout, stderr = eval_report(predictions, report, "--sequences", ",".join(SEQUENCES), "--json", "-")
    assert code == 0, stderr
    assert "Traceback" not in stderr
    scores = json.loads(stdout)

    for seq in SEQUENCES:
        path = report / "worst-frames" / f"{seq}.png"
        assert 20_000 < path.stat().st_size < 3_000_000
        sheet = read_png(path)
        assert sheet.shape[1] >= 3 * TILE_WIDTH and sheet.shape[0] >= 2 * TILE_WIDTH * 480 // 854
        assert colour_pixels(sheet, GROUND_TRUTH_BGR) > CONTOUR_PIXELS, seq
        assert colour_pixels(sheet, PREDICTION_BGR) > CONTOUR_PIXELS, seq

    overview = read_png(report / "overview.png")
    assert colour_pixels(overview, MEAN_BGR) > 100
    j_and_f = [(scores["sequences"][seq]["J"]["mean"] + scores["sequences"][seq]["F"]["mean"]) / 2 for seq in SEQUENCES]
    bar_area = sum(round(value * BAR_AREA_WIDTH) + 1 for value in j_and_f) * BAR_HEIGHT
    assert colour_pixels(overview, BAR_BGR) == pytest.approx(bar_area, rel=0.05)


def test_report_is_not_replaced_without_overwrite(predictions: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    assert eval_report(predictions, report, "--sequences", ",".join(SEQUENCES))[0] == 0
    overview = report / "overview.png"
    before = overview.stat().st_mtime_ns

    code, _, stderr = eval_report(predictions, report, "--sequences", "blackswan")
    assert code != 0 and "--overwrite" in stderr and str(report) in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert overview.stat().st_mtime_ns == before

    code, _, stderr = eval_report(predictions, report, "--sequences", "blackswan", "--overwrite")
    assert code == 0, stderr
    assert overview.stat().st_mtime_ns != before
    assert sorted(path.name for path in (report / "worst-frames").iterdir()) == ["blackswan.png"]


def test_report_folder_that_is_a_file_is_one_line(predictions: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.png"
    report.write_bytes(b"not a folder")
    code, _, stderr = eval_report(predictions, report, "--sequences", "blackswan")
    assert code != 0 and "not a folder" in stderr and str(report) in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert report.read_bytes() == b"not a folder"


def test_ctrl_c_while_a_report_is_replaced_leaves_the_earlier_report_whole(
    predictions: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hmhi_cli.report

    report = tmp_path / "report"
    assert eval_report(predictions, report, "--sequences", ",".join(SEQUENCES))[0] == 0
    files = {path: os.stat(path) for path in report.rglob("*")}
    assert len(files) == 4  # overview.png, worst-frames/ and its two sheets
    real_write_image = hmhi_cli.report.write_image

    def write_image_then_ctrl_c(path, image) -> None:  # Ctrl-C once the first new sheet is written
        real_write_image(path, image)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(hmhi_cli.report, "write_image", write_image_then_ctrl_c)
    code, stderr = call_cli(capsys, "eval", "--dataset", "davis16", "--root", str(DAVIS_DEV), "--pred", str(predictions),
                            "--sequences", ",".join(SEQUENCES), "--report", str(report), "--overwrite", "--quiet")
    assert code == 130 and "interrupted" in stderr, stderr
    after = {path: os.stat(path) for path in report.rglob("*")}
    assert after.keys() == files.keys(), "no staging folder or lock is left"
    for path, before in files.items():
        assert (after[path].st_ino, after[path].st_mtime_ns) == (before.st_ino, before.st_mtime_ns), path

    monkeypatch.setattr(hmhi_cli.report, "write_image", real_write_image)
    code, stderr = call_cli(capsys, "eval", "--dataset", "davis16", "--root", str(DAVIS_DEV), "--pred", str(predictions),
                            "--sequences", "dog", "--report", str(report), "--overwrite", "--quiet")
    assert code == 0, stderr
    assert sorted(path.relative_to(report).as_posix() for path in report.rglob("*")) == [
        "overview.png", "worst-frames", "worst-frames/dog.png"]
    assert os.stat(report / "overview.png").st_ino != files[report / "overview.png"].st_ino


def test_sheets_show_the_lowest_scoring_frames_with_the_evaluations_scores(predictions: Path, tmp_path: Path) -> None:
    result = evaluate(DAVIS_DEV, predictions, sequences=list(SEQUENCES))
    report = write_report(result, DAVIS_DEV, predictions, tmp_path / "report")

    assert [sheet.sequence for sheet in report.sheets] == list(SEQUENCES)
    assert report.overview == tmp_path / "report" / "overview.png" and report.overview.is_file()
    for sheet, scored in zip(report.sheets, result.sequences):
        assert sheet.path.is_file() and len(sheet.frames) == 6
        rows = [scored.frames.index(stem) for stem in sheet.frames]
        assert sheet.j_scores == [scored.j_scores[row] for row in rows]
        assert sheet.f_scores == [scored.f_scores[row] for row in rows]

        independent = {}
        for stem in scored.frames:
            j, f = expected_scores(truth(sheet.sequence, stem), predicted(predictions, sheet.sequence, stem))
            independent[stem] = (j + f) / 2
        shown = [independent[stem] for stem in sheet.frames]
        rest = [score for stem, score in independent.items() if stem not in sheet.frames]
        assert shown == sorted(shown), sheet.sequence
        assert max(shown) <= min(rest) + 1e-9, sheet.sequence
        for stem, j, f in zip(sheet.frames, sheet.j_scores, sheet.f_scores):
            assert (j + f) / 2 == pytest.approx(independent[stem], abs=1e-9)

    blackswan, dog = report.sheets
    assert blackswan.frames == list(SHIFTS)
    assert dog.frames[0] == MISSING_FRAME and dog.j_scores[0] == 0.0 and dog.f_scores[0] == 0.0


def test_j_only_protocols_rank_frames_by_j(predictions: Path, tmp_path: Path) -> None:
    result = evaluate(DAVIS_DEV, predictions, dataset="fbms", sequences=["blackswan"])
    report = write_report(result, DAVIS_DEV, predictions, tmp_path / "report", worst=3)

    (sheet,) = report.sheets
    scored = result.sequences[0]
    assert sheet.f_scores is None and sheet.frames == list(SHIFTS)[:3]
    assert sheet.j_scores == sorted(scored.j_scores)[:3]
    assert colour_pixels(read_png(sheet.path), PREDICTION_BGR) > CONTOUR_PIXELS // 2
    assert read_png(report.overview).shape[1] > BAR_AREA_WIDTH
