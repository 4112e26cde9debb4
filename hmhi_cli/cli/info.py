"""``hmhi version`` and ``hmhi info``: versions, device, threads and the weights found."""

from __future__ import annotations

import platform

import typer
from rich.markup import escape
from rich.table import Table

from hmhi_cli import __version__
from hmhi_cli.cli.common import out_console, print_json


def environment_report() -> dict:
    """Versions, compute device, threads, and which weights files are present."""
    import av
    import cv2
    import numpy
    import torch
    import torchvision

    from hmhi_cli import weights as weights_lib
    from hmhi_cli.flow import raft_cache_path

    default = weights_lib.default_weights_path()
    report = {
        "hmhi": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "av": av.__version__,
        "opencv": cv2.__version__,
        "numpy": numpy.__version__,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "threads": torch.get_num_threads(),
        "default_weights": str(default) if default.is_file() else None,
        "default_weights_info": weights_lib.describe(default).to_dict() if default.is_file() else None,
        "raft_weights": {variant: str(raft_cache_path(variant)) if raft_cache_path(variant).is_file() else None
                         for variant in ("raft-large", "raft-small")},
    }
    return report


def register(app: typer.Typer) -> None:
    @app.command("version")
    def version_command() -> None:
        """Print the hmhi version."""
        typer.echo(f"hmhi {__version__}")

    @app.command("info")
    def info_command(as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout.")) -> None:
        """Show versions, compute device, threads and the weights found."""
        report = environment_report()
        if as_json:
            print_json(report)
            return
        table = Table(show_header=False, box=None)
        for key, value in report.items():
            shown = escape(str(value))
            if key == "default_weights" and value is None:
                shown = "[yellow]none: no trained weights are present (pass --weights FILE)[/]"
            table.add_row(f"[bold]{key}", shown)
        out_console.print(table)
