"""``hmhi label``: training labels from the teacher (IS-Net), for photos or video frames."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.markup import escape

from hmhi_cli.cli.common import err_console, progress

LABEL_FAILED = 1


class TeacherVariant(str, Enum):
    small = "small"
    medium = "medium"


def register(app: typer.Typer) -> None:
    @app.command("label")
    def label_command(
        source: Path = typer.Argument(..., help="A folder of photos, or of video-frame folders (a DAVIS-layout root: its JPEGImages/480p)."),
        out: Path = typer.Option(..., "--out", "-o", help="Photo set to write: OUT/images/<name>.jpg + OUT/masks/<name>.png."),
        teacher: Path = typer.Option(..., "--teacher", help="IS-Net as an .onnx file, or the @imgly/background-removal-data npm package (folder or .tgz)."),
        variant: TeacherVariant = typer.Option(TeacherVariant.small, "--variant", help="Model of the npm package: small (uint8) or medium (fp16)."),
        max_side: int = typer.Option(480, "--max-side", min=0, help="Shrink photos and masks to this longest side (0: keep their size)."),
        every: int = typer.Option(1, "--every", min=1, help="Label every N-th image of each folder (video frames are alike)."),
        threads: int = typer.Option(0, "--threads", min=0, help="CPU threads of onnxruntime (0: all)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar on stderr."),
    ) -> None:
        """Label photos or video frames with the teacher (soft salient-object maps), for training; finished ones are skipped.

        Needs onnxruntime (the train extra). A package's model is assembled once into $XDG_CACHE_HOME/hmhi/teacher.
        """
        from hmhi_cli.training.labels import label_items, list_label_items
        from hmhi_cli.training.teacher import Teacher, resolve_teacher_model

        items = list_label_items(source, every, skip=out)
        model = Teacher(resolve_teacher_model(teacher, variant.value), threads or None)
        with progress(quiet) as bars:
            task = bars.add_task("labelling", total=len(items))
            summary = label_items(items, out, model, max_side or None, on_item=lambda _item, _done: bars.advance(task))
        for line in summary.failed:
            err_console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)
        print(f"labelled {summary.labelled}, already labelled {summary.skipped}, unreadable {len(summary.failed)} -> {out}")
        if summary.failed:
            raise typer.Exit(LABEL_FAILED)
