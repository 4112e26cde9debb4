"""Flow precomputed for a dataset (``hmhi flow precompute``): shards, output paths, resumable writing."""

from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import cv2
import numpy as np

from hmhi_cli.atomic import remove_partials
from hmhi_cli.errors import InputError, WriteError
from hmhi_cli.flow.estimators import FlowEstimator
from hmhi_cli.flow.flo import FLO_MAGIC, write_flo
from hmhi_cli.flow.render import flow_to_rgb
from hmhi_cli.video import read_image, write_image

if TYPE_CHECKING:
    from hmhi_cli.data.layouts import Sequence

IMAGE_FORMATS = ("jpg", "png")
JPEG_QUALITY = 95
_DAVIS_RESOLUTION = re.compile(r"^(\d+p|full-resolution)$", re.IGNORECASE)


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"i/n"`` (0-based ``i``, ASCII digits) into ``(i, n)``."""
    match = re.fullmatch(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*", text)
    if match is None:
        raise InputError(f"bad shard '{text}': expected i/n with 0 <= i < n, e.g. 0/4")
    index, count = int(match[1]), int(match[2])
    _check_shard(index, count)
    return index, count


def _check_shard(index: int, count: int) -> None:
    if count < 1 or not 0 <= index < count:
        raise InputError(f"bad shard {index}/{count}: expected i/n with 0 <= i < n")


def shard_sequences(sequences: Iterable[Sequence], index: int, count: int) -> list[Sequence]:
    """The sequences shard ``index`` of ``count`` handles: sorted by name, dealt round-robin."""
    _check_shard(index, count)
    return sorted(sequences, key=lambda sequence: sequence.name)[index::count]


@dataclass(frozen=True)
class FlowTargets:
    """Where the flow of one frame is written."""

    image: Path
    flo: Path | None

    def done(self) -> bool:
        """Whether every output exists and is whole (an empty or cut-off file is written again)."""
        return _image_complete(self.image) and (self.flo is None or _flo_complete(self.flo))


_IMAGE_ENDS = {".jpg": (b"\xff\xd8", b"\xff\xd9"), ".png": (b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82")}


def _image_complete(path: Path) -> bool:
    """Whether a JPEG/PNG file starts and ends with its format's markers (cheap: reads only both ends)."""
    start, end = _IMAGE_ENDS[path.suffix]
    try:
        with path.open("rb") as handle:
            head = handle.read(len(start))
            if handle.seek(0, io.SEEK_END) < len(start) + len(end):
                return False
            handle.seek(-len(end), io.SEEK_END)
            return head == start and handle.read() == end
    except OSError:
        return False


def _flo_complete(path: Path) -> bool:
    """Whether a ``.flo`` file is as long as its header says."""
    try:
        with path.open("rb") as handle:
            header = handle.read(12)
            size = handle.seek(0, io.SEEK_END)
    except OSError:
        return False
    if len(header) < 12:
        return False
    magic, width, height = struct.unpack("<fii", header)
    return magic == FLO_MAGIC and size == 12 + width * height * 8


def _is_davis_frame(sequence: Sequence, frame: Path) -> bool:
    """Whether ``frame`` lies in a DAVIS tree: ``JPEGImages/<resolution>/<sequence>/``."""
    return (
        frame.parent.name == sequence.name
        and frame.parent.parent.parent.name == "JPEGImages"
        and _DAVIS_RESOLUTION.match(frame.parent.parent.name) is not None
    )


def flow_targets(
    sequence: Sequence, frame: Path, out_root: Path, image_format: str = "jpg", write_flo: bool = False
) -> FlowTargets:
    """Output paths for the flow of ``frame``.

    DAVIS input (``JPEGImages/<res>/<seq>/``): ``<out>/FlowImages/<res>/<seq>/<stem>.<fmt>`` and
    ``<out>/Flow/<res>/<seq>/<stem>.flo``. Otherwise: ``<out>/<seq>/flow/<stem>.<fmt>`` and
    ``<out>/<seq>/flo/<stem>.flo``.
    """
    if _is_davis_frame(sequence, frame):
        resolution = frame.parent.parent.name
        image_dir = out_root / "FlowImages" / resolution / sequence.name
        flo_dir = out_root / "Flow" / resolution / sequence.name
    else:
        image_dir = out_root / sequence.name / "flow"
        flo_dir = out_root / sequence.name / "flo"
    return FlowTargets(
        image=image_dir / f"{frame.stem}.{image_format}",
        flo=flo_dir / f"{frame.stem}.flo" if write_flo else None,
    )


@dataclass(frozen=True)
class FlowProgress:
    """Progress within one sequence, reported before its first frame and after every frame."""

    sequence: str
    done: int
    total: int
    computed: int
    skipped: int


@dataclass(frozen=True)
class PrecomputeSummary:
    """What :func:`precompute_flow` did."""

    sequences: int
    computed: int
    skipped: int


def _image_params(path: Path) -> list[int]:
    return [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if path.suffix == ".jpg" else []


def _write_flo_checked(path: Path, flow: np.ndarray) -> None:
    try:
        write_flo(path, flow)
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _precompute_sequence(
    sequence: Sequence,
    out_root: Path,
    estimator: FlowEstimator,
    image_format: str,
    write_flo: bool,
    progress: Callable[[FlowProgress], None] | None,
) -> tuple[int, int]:
    frames = list(sequence.frames)
    targets = [flow_targets(sequence, frame, out_root, image_format, write_flo) for frame in frames]
    for directory in {path.parent for target in targets for path in (target.image, target.flo) if path is not None}:
        if directory.is_dir():
            remove_partials(directory)
    decoded: dict[int, np.ndarray] = {}

    def frame_at(index: int) -> np.ndarray:
        if index not in decoded:
            decoded[index] = read_image(frames[index])
        return decoded[index]

    computed = skipped = 0
    total = len(frames)
    if progress:
        progress(FlowProgress(sequence.name, 0, total, 0, 0))
    for index, target in enumerate(targets):
        if target.done():
            skipped += 1
        else:
            frame = frame_at(index)
            if total == 1:
                flow = np.zeros((*frame.shape[:2], 2), dtype=np.float32)
            else:
                other_index = index + 1 if index + 1 < total else index - 1
                other = frame_at(other_index)
                if other.shape != frame.shape:
                    raise InputError(f"frames differ in size: {frames[index]} and {frames[other_index]}")
                flow = estimator.estimate(frame, other)
            write_image(target.image, cv2.cvtColor(flow_to_rgb(flow), cv2.COLOR_RGB2BGR), _image_params(target.image))
            if target.flo is not None:
                _write_flo_checked(target.flo, flow)
            computed += 1
        for stale in [key for key in decoded if key < index]:
            del decoded[stale]
        if progress:
            progress(FlowProgress(sequence.name, index + 1, total, computed, skipped))
    return computed, skipped


def precompute_flow(
    sequences: Iterable[Sequence],
    out_root: str | Path,
    estimator: FlowEstimator,
    image_format: str = "jpg",
    write_flo: bool = False,
    shard: tuple[int, int] = (0, 1),
    progress: Callable[[FlowProgress], None] | None = None,
) -> PrecomputeSummary:
    """Write the flow image of every frame of ``sequences`` (this shard's share) under ``out_root``.

    Frames whose outputs already exist are skipped, so an interrupted run resumes where it
    stopped; frames are decoded only when a flow needs them. Paths: see :func:`flow_targets`.
    """
    if image_format not in IMAGE_FORMATS:
        raise InputError(f"unknown flow image format '{image_format}': choose {', '.join(IMAGE_FORMATS)}")
    out_root = Path(out_root)
    mine = shard_sequences(sequences, *shard)
    computed = skipped = 0
    for sequence in mine:
        done, existing = _precompute_sequence(sequence, out_root, estimator, image_format, write_flo, progress)
        computed += done
        skipped += existing
    return PrecomputeSummary(sequences=len(mine), computed=computed, skipped=skipped)
