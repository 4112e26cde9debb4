"""``hmhi eval``: score predicted masks on DAVIS-16, FBMS or YouTube-Objects."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.table import Table

from hmhi_cli.cli.common import err_console, print_json, progress

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
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=PIPE_WIDTH)


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
            table.add_row(sequence.name, *cells(sequence, len(sequence.frames), len(sequence.missing)))
        table.add_section()
    frames = sum(len(sequence.frames) for sequence in result.sequences)
    table.add_row("mean", *cells(result, frames, len(result.missing)), style="bold")
    return table


def _warn_missing(missing: list[str]) -> None:
    shown = ", ".join(missing[:MISSING_SHOWN])
    more = f" and {len(missing) - MISSING_SHOWN} more" if len(missing) > MISSING_SHOWN else ""
    noun = "prediction" if len(missing) == 1 else "predictions"
    err_console.print(
        f"[yellow]warning:[/] {len(missing)} {noun} missing, scored as empty masks: {shown}{more}",
        highlight=False,
        soft_wrap=True,
    )


def eval_command(
    dataset: Dataset = typer.Option(..., "--dataset", help="Benchmark protocol: davis16 (J and F), fbms or ytobj (J)."),
    root: Path = typer.Option(..., "--root", help="Dataset root (DAVIS, FBMS, YouTube-Objects or reference layout)."),
    pred: Path = typer.Option(..., "--pred", help="Predicted masks or soft maps: PRED/<sequence>/<frame>.png."),
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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar; the table shows only the mean row."),
) -> None:
    """Score predicted masks against a benchmark's ground truth (DAVIS toolkit protocol)."""
    from hmhi_cli.evaluation import evaluate

    names = None
    if sequences is not None:
        names = [name.strip() for name in sequences.split(",") if name.strip()]
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
    if csv_path is not None:
        result.write_csv(csv_path)
    if json_path is not None and str(json_path) == "-":
        print_json(result.to_dict())
        return
    if json_path is not None:
        result.write_json(json_path)
    _stdout_console().print(_table(result, quiet))


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command to ``app``."""
    app.command("eval")(eval_command)
