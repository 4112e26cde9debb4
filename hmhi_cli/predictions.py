"""Prediction folders that ``hmhi eval --weights`` segments a dataset into: resumed, never mixed.

A folder holds ``<sequence>/<frame>.png`` refined mattes (what ``hmhi segment``'s masks and alpha
come from) and :data:`MANIFEST_NAME`, a JSON record of the settings that produced them (weights
file name and SHA-256, input size, flow, precision, kind of map) and of the sequences finished so
far. Each sequence is segmented into a hidden staging folder and moved into place only when
complete, so an error or Ctrl-C leaves the finished sequences and nothing half-done. A later run
with the same settings resumes after the finished sequences. A folder written with other
settings (raw soft maps of an earlier version included), or holding files without a manifest,
is refused unless ``overwrite``, which first removes the predictions to be replaced: the
sequences the earlier manifest lists and those about to be segmented.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hmhi_cli.atomic import write_text
from hmhi_cli.data.layouts import Sequence, load_dataset
from hmhi_cli.errors import OutputError, WriteError
from hmhi_cli.flow import resolve_flow_backend
from hmhi_cli.inference import load_segmentation_weights, resolve_device, segment_dataset
from hmhi_cli.weights import file_sha256

MANIFEST_NAME = "hmhi-predictions.json"
STAGING_NAME = ".hmhi-staging"


@dataclass(frozen=True)
class PredictionSettings:
    """What decides the maps a run writes."""

    weights: str  # file name
    weights_sha256: str
    input_size: int
    flow: str  # backend name, or "precomputed"
    precision: str
    maps: str = "refined"
    """``refined`` mattes; ``soft`` (the raw soft maps) in folders written before the mattes were refined."""

    def describe(self) -> str:
        digest = self.weights_sha256[:12]
        return (f"{self.weights} (sha256 {digest}), input {self.input_size}, flow {self.flow}, {self.precision}, "
                f"{self.maps} maps")


@dataclass(frozen=True)
class Manifest:
    """The settings of a prediction folder and the sequences finished with them."""

    settings: PredictionSettings
    finished: list[str]


def read_manifest(folder: str | os.PathLike) -> Manifest | None:
    """The folder's manifest; None when it is absent or unreadable."""
    try:
        data = json.loads((Path(folder) / MANIFEST_NAME).read_text(encoding="utf-8"))
        settings = PredictionSettings(**{"maps": "soft", **data["settings"]})  # before "maps", maps were soft
        return Manifest(settings, [str(name) for name in data["finished"]])
    except (OSError, ValueError, TypeError, KeyError):
        return None


def write_manifest(folder: str | os.PathLike, manifest: Manifest) -> None:
    """Write ``manifest`` into ``folder`` atomically."""
    data = {"settings": dataclasses.asdict(manifest.settings), "finished": manifest.finished}
    try:
        write_text(Path(folder) / MANIFEST_NAME, json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        raise WriteError(f"cannot write {Path(folder) / MANIFEST_NAME}: {exc.strerror or exc}") from exc


def resumable_sequences(folder: Path, manifest: Manifest | None, settings: PredictionSettings,
                        overwrite: bool = False) -> list[str]:
    """Sequences already finished in ``folder`` (whose manifest is ``manifest``) with ``settings``.

    A folder holding predictions of other settings, or files without a manifest, raises
    :class:`OutputError`, unless ``overwrite``: then it has none to resume.
    """
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"prediction folder is not a folder: {folder}")
    if manifest is None:
        if _visible_entries(folder) and not overwrite:
            raise OutputError(
                f"{folder} holds files without a valid {MANIFEST_NAME} ('hmhi eval --weights' did not write them); "
                "pass --overwrite to replace its predictions, or choose an empty --pred folder"
            )
        return []
    if manifest.settings == settings:
        return manifest.finished
    if not overwrite:
        raise OutputError(
            f"{folder} holds predictions of {manifest.settings.describe()}, not {settings.describe()}; "
            "pass --overwrite to replace them, or choose another --pred folder"
        )
    return []


def predict_dataset(
    root: str | os.PathLike,
    folder: str | os.PathLike,
    weights: str | os.PathLike,
    *,
    size: int | None = None,
    flow: str = "auto",
    raft_weights: str | os.PathLike | None = None,
    flow_dir: str | os.PathLike | None = None,
    device: str = "auto",
    precision: str = "fp32",
    sequences: list[str] | None = None,
    overwrite: bool = False,
    on_info: Callable[[str], None] | None = None,
    on_frame: Callable[[str, int, int], None] | None = None,
) -> list[str]:
    """Segment the dataset at ``root`` into ``folder`` (see the module documentation); return what was segmented now.

    ``size`` defaults to the weights' input size; ``flow_dir`` (the ``--out`` of
    ``hmhi flow precompute``) replaces the ``flow`` backend. ``on_info(message)`` says what is
    about to run, ``on_frame(sequence, done, total)`` reports progress.
    """
    folder = Path(folder)
    net, info, weights_path = load_segmentation_weights(weights)
    torch_device = resolve_device(device)
    estimator = None
    if flow_dir is None:
        estimator = resolve_flow_backend(
            flow, raft_weights, torch_device.type, allow_download=True, dis_max_side=info.flow_max_side
        )
    settings = PredictionSettings(
        weights=weights_path.name,
        weights_sha256=file_sha256(weights_path),
        input_size=size or info.input_size,
        flow="precomputed" if estimator is None else estimator.name,
        precision=precision,
    )
    planned = load_dataset(root, sequences=sequences)
    earlier = read_manifest(folder)
    finished = resumable_sequences(folder, earlier, settings, overwrite)
    if earlier is None or earlier.settings != settings:
        _remove_sequences(folder, {sequence.name for sequence in planned} | set(earlier.finished if earlier else []))
    staging = folder / STAGING_NAME
    shutil.rmtree(staging, ignore_errors=True)
    if earlier != Manifest(settings, finished):
        write_manifest(folder, Manifest(settings, finished))
    todo = [sequence for sequence in planned if not (sequence.name in finished and _complete(folder, sequence))]
    if on_info:
        resumed = f", {len(planned) - len(todo)} finished earlier" if len(todo) < len(planned) else ""
        on_info(f"segmenting {len(todo)} of {len(planned)} sequences{resumed} with {settings.describe()} -> {folder}")
    for sequence in todo:
        try:
            segment_dataset(net, root, staging, settings.input_size, estimator, sequences=[sequence.name],
                            flow_root=None if flow_dir is None else Path(flow_dir), device=torch_device,
                            precision=precision, on_frame=on_frame)
            _move_into_place(staging / sequence.name, folder / sequence.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        finished = [name for name in finished if name != sequence.name] + [sequence.name]
        write_manifest(folder, Manifest(settings, finished))
    return [sequence.name for sequence in todo]


def _visible_entries(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [path for path in folder.iterdir() if not path.name.startswith(".")]


def _complete(folder: Path, sequence: Sequence) -> bool:
    return all((folder / sequence.name / f"{frame.stem}.png").is_file() for frame in sequence.frames)


def _remove_sequences(folder: Path, names: set[str]) -> None:
    """Delete the sequence folders ``names`` under ``folder``; names that would reach outside it are passed over."""
    for name in names:
        relative = Path(name)
        if relative.parts and not relative.is_absolute() and ".." not in relative.parts:
            shutil.rmtree(folder / relative, ignore_errors=True)


def _move_into_place(staged: Path, target: Path) -> None:
    """Replace ``target`` (a sequence folder) with the finished ``staged`` one."""
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, target)
