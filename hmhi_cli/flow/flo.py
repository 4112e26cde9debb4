"""Middlebury ``.flo`` flow files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from hmhi_cli.atomic import write_bytes
from hmhi_cli.errors import InputError
from hmhi_cli.flow.render import _check_flow

FLO_MAGIC = 202021.25


def write_flo(path: str | Path, flow: np.ndarray) -> None:
    """Write ``flow`` (HxWx2) as a Middlebury ``.flo`` file, atomically."""
    _check_flow(flow)
    height, width = flow.shape[:2]
    header = struct.pack("<fii", FLO_MAGIC, width, height)
    write_bytes(path, header + np.ascontiguousarray(flow, dtype="<f4").tobytes())


def read_flo(path: str | Path) -> np.ndarray:
    """Read a Middlebury ``.flo`` file into an HxWx2 float32 array."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read flow file {path}: {exc.strerror or exc}") from exc
    if len(data) < 12:
        raise InputError(f"not a .flo file (too short): {path}")
    magic, width, height = struct.unpack("<fii", data[:12])
    if magic != FLO_MAGIC:
        raise InputError(f"not a .flo file (bad magic number {magic}): {path}")
    if width < 1 or height < 1 or len(data) != 12 + width * height * 8:
        raise InputError(f"truncated or malformed .flo file ({width}x{height} header, {len(data)} bytes): {path}")
    return np.frombuffer(data, dtype="<f4", offset=12).reshape(height, width, 2).astype(np.float32)
