"""Helpers shared by the parity tests: the fixture's deterministic weights and arrays."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import torch

PARITY_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "parity"
STATE_DICT_LAYOUT = PARITY_DIR / "hmhi_mit_b1_state_dict.json"
FIXTURE = PARITY_DIR / "hmhi_parity_256.npz"


def reference_layout() -> list[tuple[str, list[int], str]]:
    return [tuple(entry) for entry in json.loads(STATE_DICT_LAYOUT.read_text())]


def deterministic_tensor(key: str, shape: list[int]) -> torch.Tensor:
    """The fixture's weight for ``key`` (see ../shared/parity/README.md)."""
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    if len(shape) >= 2:
        return torch.randn(shape, generator=generator) / math.sqrt(math.prod(shape[1:]))
    if key.endswith("weight") or key.endswith("gamma"):
        return 1.0 + 0.1 * torch.randn(shape, generator=generator)
    return 0.1 * torch.randn(shape, generator=generator)


def deterministic_state_dict() -> dict[str, torch.Tensor]:
    return {key: deterministic_tensor(key, shape) for key, shape, _ in reference_layout()}


def load_fixture() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


def tolerance(reference: np.ndarray) -> float:
    return 2e-4 * max(1.0, float(np.abs(reference).max()))
