"""``hmhi eval``: score predicted masks on DAVIS-16, FBMS or YouTube-Objects."""

from __future__ import annotations

import contextlib
import tempfile
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hmhi_cli.cli.common import Device, FlowBackend, Precision, check_stdout_open, err_console, print_json, progress
from hmhi_cli.errors import InputError

if TYPE_CHECKING:
    from hmhi_cli.evaluation import EvaluationResult, SequenceResult

MISSING_SHOWN = 3
PIPE_WIDTH = 200  # stdout is not a terminal: do not squeeze the table into 80 columns


class Dataset(str, Enum):
    davis16 = "davis16"
    fbms = "fbms"
    ytobj = "ytobj"


class MetricSet(str, Enum):
    jf = "jf"
    vsod = "vsod"


def _stdout_console() -> Console:
    console = Console(highlight=False, emoji=False)
    return console if console.is_terminal else Console(highlight=False, emoji=False, width=PIPE_WIDTH)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _table(result: EvaluationResult, quiet: bool) -> Table:
    """Per-sequence rows (unless ``quiet``) and a closing dataset row."""
    with_boundary = result.f is not None
    vsod = result.vsod is not None
    table = Table(title=f"{result.dataset} ({len(result.sequences)} sequences)")
    table.add_column("Sequence", no_wrap=True)
    if vsod:
        measures = ["J", "F", "J&F"] if with_boundary else ["J"]
        measures += ["MAE", "max F", "S", "max E"]
    else:
        measures = ["J mean", "J recall", "J decay"]
        if with_boundary:
            measures += ["F mean", "F recall", "F decay", "J&F"]
    for header in measures + ["Frames", "Missing"]:
        table.add_column(header, justify="right", no_wrap=True)

    def cells(scores: SequenceResult | EvaluationResult, frames: int, missing: int) -> list[str]:
        j, f = scores.j, scores.f
        if vsod:
            values = [j.mean, f.mean, scores.j_and_f] if with_boundary else [j.mean]
            values += [scores.vsod.mae, scores.vsod.max_f, scores.vsod.s_measure, scores.vsod.max_e]
        else:
            values = [j.mean, j.recall, j.decay]
            if with_boundary:
                values += [f.mean, f.recall, f.decay, scores.j_and_f]
        return [_number(value) for value in values] + [str(frames), str(missing)]

    if not quiet:
        for sequence in result.sequences:
            table.add_row(escape(sequence.name), *cells(sequence, len(sequence.frames), len(sequence.missing)))
        table.add_section()
    frames = sum(len(sequence.frames) for sequence in result.sequences)
    table.add_row("mean", *cells(result, frames, len(result.missing)), style="bold")
    return table


def _warn_missing(missing: list[str]) -> None:
    shown = ", ".join(missing[:MISSING_SHOWN])
    more = f" and {len(missing) - MISSING_SHOWN} more" if len(missing) > MISSING_SHOWN else ""
    noun = "prediction" if len(missing) == 1 else "predictions"
    err_console.print(
        f"[yellow]warning:[/] {len(missing)} {noun} missing, scored as empty masks: {escape(shown)}{more}",
        highlight=False,
        soft_wrap=True,
    )


def eval_command(
    dataset: Dataset = typer.Option(..., "--dataset", help="Benchmark protocol: davis16 (J and F), fbms or ytobj (J)."),
    root: Path = typer.Option(..., "--root", help="Dataset root (DAVIS, FBMS, YouTube-Objects or reference layout)."),
    pred: Optional[Path] = typer.Option(
        None, "--pred",
        help="Predicted masks or soft maps: PRED/<sequence>/<frame>.png (with --weights: written there, resumed).",
    ),
    weights: Optional[Path] = typer.Option(
        None, "--weights", help="Run the model on the dataset first (predictions go to --pred, or a temporary folder)."
    ),
    size: Optional[int] = typer.Option(None, "--size", help="Model input size with --weights (default: the weights')."),
    flow: FlowBackend = typer.Option(FlowBackend.auto, "--flow", help="Flow backend with --weights."),
    raft_weights: Optional[Path] = typer.Option(None, "--raft-weights", help="RAFT weights file."),
    flow_dir: Optional[Path] = typer.Option(
        None, "--flow-dir", help="Use flow images from 'hmhi flow precompute --out DIR' instead of computing flow."
    ),
    device: Device = typer.Option(Device.auto, "--device", help="Compute device with --weights."),
    precision: Precision = typer.Option(Precision.fp32, "--precision", help="Model arithmetic with --weights."),
    sequences: Optional[str] = typer.Option(
        None, "--sequences", help="Comma-separated sequence names (default: the dataset's evaluation list)."
    ),
    all_frames: bool = typer.Option(False, "--all-frames", help="DAVIS: also score the first and last frame."),
    metrics: MetricSet = typer.Option(
        MetricSet.jf, "--metrics", help="jf: J/F statistics; vsod: also MAE, max F, S and max E."
    ),
    json_path: Optional[Path] = typer.Option(
        None, "--json", help="Write all results as JSON to FILE ('-': JSON on stdout instead of the table)."
    ),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Write one CSV row per sequence plus a mean row."),
    report: Optional[Path] = typer.Option(
        None, "--report", help="Write pictures to DIR: overview.png and worst-frames/<sequence>.png contact sheets."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing --report, and --pred predictions made with other settings."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar; the table shows only the mean row."),
) -> None:
    """Score predicted masks against a benchmark's ground truth (DAVIS toolkit protocol).

    With --weights, segment the dataset first: one command from checkpoint to table.
    """
    from hmhi_cli.evaluation import evaluate
    from hmhi_cli.report import check_report_folder, write_report

    names = None
    if sequences is not None:
        names = [name.strip() for name in sequences.split(",") if name.strip()]
    if json_path is not None and str(json_path) == "-":
        check_stdout_open("the JSON")
    if pred is None and weights is None:
        raise InputError("pass --pred PRED (predictions to score) or --weights W (segment the dataset first)")
    if report is not None:
        check_report_folder(report, overwrite)
    with contextlib.ExitStack() as stack:
        if weights is not None:
            pred = pred or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hmhi-eval-")))
            _predict(root, pred, names, weights, size, flow.value, raft_weights, flow_dir, device.value,
                     precision.value, overwrite, quiet)
        result = _score(evaluate, root, pred, dataset, names, all_frames, metrics, quiet)
        if report is not None:
            written = write_report(result, root, pred, report, overwrite=overwrite)
            if not quiet:
                err_console.print(f"report written to {report}: {written.overview.name} and "
                                  f"{len(written.sheets)} contact sheets", markup=False, highlight=False, soft_wrap=True)
    if csv_path is not None:
        result.write_csv(csv_path)
    if json_path is not None and str(json_path) == "-":
        print_json(result.to_dict())
        return
    if json_path is not None:
        result.write_json(json_path)
    _stdout_console().print(_table(result, quiet))


def _predict(root: Path, pred: Path, names: list[str] | None, weights: Path, size: int | None, flow: str,
             raft_weights: Path | None, flow_dir: Path | None, device: str, precision: str, overwrite: bool,
             quiet: bool) -> None:
    """Segment the dataset into ``pred``: resumes a run of the same settings, refuses others unless ``overwrite``."""
    from hmhi_cli.predictions import predict_dataset
    from hmhi_cli.runtime import share_cores_between_stages

    share_cores_between_stages()

    def inform(message: str) -> None:
        if not quiet:
            err_console.print(message, markup=False, highlight=False, soft_wrap=True)

    with progress(quiet) as bars:
        task = bars.add_task("segmenting", total=None)

        def show(sequence: str, done: int, total: int) -> None:
            bars.update(task, completed=done, total=total, description=f"segmenting {sequence}")

        predict_dataset(root, pred, weights, size=size, flow=flow, raft_weights=raft_weights, flow_dir=flow_dir,
                        device=device, precision=precision, sequences=names, overwrite=overwrite, on_info=inform,
                        on_frame=show)


def _score(evaluate, root: Path, pred: Path, dataset: Dataset, names: list[str] | None, all_frames: bool,
           metrics: MetricSet, quiet: bool) -> EvaluationResult:
    with progress(quiet) as bars:
        task = bars.add_task("evaluating", total=None)

        def show(done: int, total: int, sequence: str) -> None:
            bars.update(task, completed=done, total=total, description=sequence)

        result = evaluate(
            root,
            pred,
            dataset=dataset.value,
            sequences=names,
            all_frames=all_frames,
            metrics=metrics.value,
            progress_callback=show,
        )
    if result.missing:
        _warn_missing(result.missing)
    return result


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command to ``app``."""
    app.command("eval")(eval_command)
