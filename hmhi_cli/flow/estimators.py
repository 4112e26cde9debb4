"""Optical flow estimators behind one interface, :class:`FlowEstimator`: OpenCV's DIS and torchvision's RAFT.

- ``raft-large`` / ``raft-small``: torchvision RAFT; weights from a file, torchvision's cache, or
  (only when allowed) torchvision's download.
- ``dis``: OpenCV's DIS optical flow on grey frames; no weights, fast on CPU.
- ``auto``: RAFT when weights are given (large or small, as the file holds) or RAFT-large's are
  in torchvision's cache, else DIS.
"""

from __future__ import annotations

import abc
import contextlib
import io
import math
import sys
from pathlib import Path
from urllib.error import URLError

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from hmhi_cli.errors import InputError, WeightsError
from hmhi_cli.flow.render import flow_to_rgb
from hmhi_cli.weights import read_state_dict

FLOW_BACKENDS = ("auto", "raft-large", "raft-small", "dis")
DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
RAFT_MIN_SIDE = 128  # RAFT's correlation pyramid needs feature maps of at least 16x16 (stride 8)


def _check_pair(frame_a: np.ndarray, frame_b: np.ndarray) -> None:
    for frame in (frame_a, frame_b):
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            shape = getattr(frame, "shape", None)
            dtype = getattr(frame, "dtype", type(frame).__name__)
            raise InputError(f"a flow frame must be an HxWx3 uint8 RGB array, got shape {shape} dtype {dtype}")
    if frame_a.shape != frame_b.shape:
        (height_a, width_a), (height_b, width_b) = frame_a.shape[:2], frame_b.shape[:2]
        raise InputError(f"frames differ in size: {width_a}x{height_a} vs {width_b}x{height_b}")


def _scaled_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """(height, width) after capping the longer side at ``max_side``, aspect kept."""
    if max_side is None or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _resize_flow(flow: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resample an HxWx2 flow field to ``height`` x ``width``, scaling the vectors to the new pixel grid."""
    small_h, small_w = flow.shape[:2]
    if (small_h, small_w) == (height, width):
        return flow
    resized = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
    resized[..., 0] *= width / small_w
    resized[..., 1] *= height / small_h
    return resized


def resolve_device(device: str) -> str:
    """Turn ``auto`` / ``cpu`` / ``cuda`` into a usable torch device name."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"device '{device}' was asked for but no CUDA GPU is available; use --device cpu")
        return device
    raise InputError(f"unknown device '{device}': choose auto, cpu or cuda")


class FlowEstimator(abc.ABC):
    """Dense optical flow between two RGB frames of the same size."""

    name: str
    device: str

    def estimate(self, frame_a: np.ndarray, frame_b: np.ndarray) -> np.ndarray:
        """Flow from ``frame_a`` to ``frame_b``: HxWx2 float32 (dx, dy) in pixels at the input resolution."""
        _check_pair(frame_a, frame_b)
        flow = self._estimate(frame_a, frame_b)
        return np.ascontiguousarray(flow, dtype=np.float32)

    def flow_image(self, frame_a: np.ndarray, frame_b: np.ndarray | None, size: int) -> np.ndarray:
        """The model's view of the flow from ``frame_a`` to ``frame_b`` (None: no motion):
        sampled on a ``size`` x ``size`` grid over the frame, vectors in the frame's pixels,
        rendered with :func:`flow_to_rgb`. Training and inference both use this, so the
        network is trained on exactly the flow images it is given."""
        height, width = frame_a.shape[:2]
        if frame_b is None:
            return flow_to_rgb(np.zeros((size, size, 2), np.float32))
        _check_pair(frame_a, frame_b)
        flow = np.asarray(self._working_flow(frame_a, frame_b), dtype=np.float32)
        on_grid = cv2.resize(flow, (size, size), interpolation=cv2.INTER_LINEAR)
        on_grid[..., 0] *= width / flow.shape[1]
        on_grid[..., 1] *= height / flow.shape[0]
        return flow_to_rgb(on_grid)

    @abc.abstractmethod
    def _estimate(self, frame_a: np.ndarray, frame_b: np.ndarray) -> np.ndarray:
        """Backend-specific flow of two validated frames."""

    def _working_flow(self, frame_a: np.ndarray, frame_b: np.ndarray) -> np.ndarray:
        """The flow at the backend's working resolution, vectors in its pixels (default: the frame's)."""
        return self._estimate(frame_a, frame_b)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, device={self.device!r})"


DIS_MIN_SIDE = 12
"""OpenCV's DIS needs frames of at least this many pixels each way ("width or height >= 12")."""


class DisFlowEstimator(FlowEstimator):
    """OpenCV DIS optical flow on grey frames; ``max_side`` optionally caps the working resolution."""

    def __init__(self, preset: str = "medium", max_side: int | None = None) -> None:
        if preset not in DIS_PRESETS:
            raise InputError(f"unknown DIS preset '{preset}': choose {', '.join(DIS_PRESETS)}")
        if max_side is not None and max_side < 1:
            raise InputError(f"max_side must be a positive number of pixels, got {max_side}")
        self.name = "dis"
        self.device = "cpu"
        self.preset = preset
        self.max_side = max_side
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])

    def _estimate(self, frame_a: np.ndarray, frame_b: np.ndarray) -> np.ndarray:
        return _resize_flow(self._working_flow(frame_a, frame_b), *frame_a.shape[:2])

    def _working_flow(self, frame_a: np.ndarray, frame_b: np.ndarray) -> np.ndarray:
        height, width = frame_a.shape[:2]
        work_h, work_w = _scaled_size(height, width, self.max_side)
        greys = []
        for frame in (frame_a, frame_b):
            grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            if (work_h, work_w) != (height, width):
                grey = cv2.resize(grey, (work_w, work_h), interpolation=cv2.INTER_AREA)
            greys.append(grey)
        pad_h, pad_w = max(0, DIS_MIN_SIDE - work_h), max(0, DIS_MIN_SIDE - work_w)
        if pad_h or pad_w:  # OpenCV's DIS refuses smaller frames: repeat the edge pixels, crop the flow back
            greys = [cv2.copyMakeBorder(grey, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE) for grey in greys]
        return self._dis.calc(greys[0], greys[1], None)[:work_h, :work_w]


_RAFT_VARIANTS = ("raft-large", "raft-small")


def _raft_builder_and_weights(variant: str):
    from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights, raft_large, raft_small

    if variant == "raft-large":
        return raft_large, Raft_Large_Weights.DEFAULT
    return raft_small, Raft_Small_Weights.DEFAULT


RAFT_WEIGHT_FILES = {"raft-large": "raft_large_C_T_SKHT_V2-ff5fadd5.pth", "raft-small": "raft_small_C_T_V2-01064c6d.pth"}
"""File names of torchvision's default RAFT weights (its download URLs' last part; a test keeps
them equal), so that finding a cached file does not import torchvision's models (1.5 s)."""


def raft_cache_path(variant: str = "raft-large") -> Path:
    """Where torchvision keeps the default weights of ``variant`` once downloaded (it may not exist)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / RAFT_WEIGHT_FILES[variant]


_RAFT_STEM = "feature_encoder.convnormrelu.0.weight"
_RAFT_VARIANT_BY_STEM_WIDTH = {64: "raft-large", 32: "raft-small"}


def raft_variant(weights: str | Path) -> str:
    """``raft-large`` or ``raft-small``: which RAFT a weights file holds, from its first convolution's width."""
    stem = read_state_dict(weights)[0].get(_RAFT_STEM)
    variant = None if stem is None else _RAFT_VARIANT_BY_STEM_WIDTH.get(stem.shape[0])
    if variant is None:
        raise WeightsError(f"{weights}: not RAFT weights (no raft-large or raft-small '{_RAFT_STEM}')")
    return variant


def _download_reason(exc: Exception) -> str:
    """Why a download failed, in a few words ("Connection refused", not urllib's wrapped message)."""
    cause = exc.reason if isinstance(exc, URLError) else exc
    return getattr(cause, "strerror", None) or " ".join(str(cause).split()) or type(exc).__name__


def _load_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str, variant: str) -> None:
    expected = model.state_dict()
    missing = expected.keys() - state.keys()
    unexpected = state.keys() - expected.keys()
    wrong_shape = [key for key in expected.keys() & state.keys() if expected[key].shape != state[key].shape]
    if missing or unexpected or wrong_shape:
        raise WeightsError(
            f"{source} does not match {variant}: {len(missing)} missing, {len(unexpected)} unexpected and "
            f"{len(wrong_shape)} wrongly shaped tensors (weights of another model or RAFT variant?)"
        )
    model.load_state_dict(state, strict=True)


class RaftFlowEstimator(FlowEstimator):
    """torchvision RAFT (large or small).

    Frames are downscaled so the longer side is at most ``max_side`` (``None``: full resolution),
    padded to a multiple of 8 (and to RAFT's minimum of 128 pixels), and the flow is cropped,
    resized and rescaled back to the input resolution.
    """

    def __init__(
        self,
        variant: str = "raft-large",
        weights: str | Path | None = None,
        device: str = "cpu",
        num_flow_updates: int = 12,
        max_side: int | None = 520,
        allow_download: bool = False,
    ) -> None:
        if variant not in _RAFT_VARIANTS:
            raise InputError(f"unknown RAFT variant '{variant}': choose {', '.join(_RAFT_VARIANTS)}")
        if num_flow_updates < 1:
            raise InputError(f"num_flow_updates must be at least 1, got {num_flow_updates}")
        if max_side is not None and max_side < 1:
            raise InputError(f"max_side must be a positive number of pixels, got {max_side}")
        self.name = variant
        self.device = resolve_device(device)
        self.num_flow_updates = num_flow_updates
        self.max_side = max_side
        self.model = self._build(variant, None if weights is None else Path(weights), allow_download)
        self.model.to(self.device).eval()

    @staticmethod
    def _build(variant: str, weights: Path | None, allow_download: bool) -> torch.nn.Module:
        builder, default_weights = _raft_builder_and_weights(variant)
        model = builder(weights=None)
        if weights is not None:
            _load_checked(model, read_state_dict(weights)[0], str(weights), variant)
            return model
        cached = raft_cache_path(variant)
        if cached.is_file():
            _load_checked(model, read_state_dict(cached)[0], str(cached), variant)
            return model
        if not allow_download:
            raise WeightsError(
                f"{variant} weights not found: put {cached.name} (from {default_weights.url}) in {cached.parent}/ "
                f"or pass --raft-weights FILE"
            )
        torch_notes = io.StringIO()
        try:
            with contextlib.redirect_stdout(torch_notes):  # torch announces the download on stdout before trying
                state = default_weights.get_state_dict(progress=False, check_hash=True)
        except Exception as exc:
            raise WeightsError(
                f"cannot download {variant} weights ({_download_reason(exc)}): pass --raft-weights FILE "
                f"(torchvision's {cached.name}) or use --flow dis"
            ) from exc
        sys.stderr.write(torch_notes.getvalue())
        _load_checked(model, state, default_weights.url, variant)
        return model

    def _estimate(self, frame_a: np.ndarray, frame_b: np.ndarray) -> np.ndarray:
        height, width = frame_a.shape[:2]
        work_h, work_w = _scaled_size(height, width, self.max_side)
        pad_h = max(RAFT_MIN_SIDE, math.ceil(work_h / 8) * 8)
        pad_w = max(RAFT_MIN_SIDE, math.ceil(work_w / 8) * 8)
        pair = torch.from_numpy(np.stack([frame_a, frame_b])).to(self.device)
        pair = pair.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)  # RAFT expects [-1, 1]
        if (work_h, work_w) != (height, width):
            pair = F.interpolate(pair, size=(work_h, work_w), mode="bilinear", align_corners=False, antialias=True)
        pair = F.pad(pair, (0, pad_w - work_w, 0, pad_h - work_h), mode="replicate")
        with torch.inference_mode():
            predictions = self.model(pair[0:1], pair[1:2], num_flow_updates=self.num_flow_updates)
        flow = predictions[-1][0, :, :work_h, :work_w].permute(1, 2, 0).float().cpu().numpy()
        return _resize_flow(np.ascontiguousarray(flow), height, width)


def resolve_flow_backend(
    name: str,
    raft_weights: str | Path | None = None,
    device: str = "cpu",
    *,
    allow_download: bool = False,
    num_flow_updates: int = 12,
    max_side: int | None = 520,
    dis_preset: str = "medium",
    dis_max_side: int | None = None,
) -> FlowEstimator:
    """Build the estimator for backend ``name`` (see :data:`FLOW_BACKENDS`).

    ``auto`` picks RAFT when ``raft_weights`` is given (the variant the file holds) or torchvision's
    cache holds RAFT-large's weights, else DIS; the returned estimator's ``name`` says which. So
    ``auto`` never needs a download: ``allow_download`` only lets an explicitly named RAFT fetch
    torchvision's weights.
    ``max_side`` caps RAFT's working resolution; ``dis_max_side`` caps DIS's (None: full
    resolution), as the weights in use record it. Weights that record it were trained on DIS
    flow, so with them ``auto`` keeps to DIS unless ``raft_weights`` are given.
    """
    if name not in FLOW_BACKENDS:
        raise InputError(f"unknown flow backend '{name}': choose {', '.join(FLOW_BACKENDS)}")
    if name == "auto":
        if raft_weights is not None:
            name = raft_variant(raft_weights)
        elif dis_max_side is None and raft_cache_path("raft-large").is_file():
            name = "raft-large"
        else:
            return DisFlowEstimator(preset=dis_preset, max_side=dis_max_side)
    if name == "dis":
        return DisFlowEstimator(preset=dis_preset, max_side=dis_max_side)
    return RaftFlowEstimator(
        name,
        weights=raft_weights,
        device=device,
        num_flow_updates=num_flow_updates,
        max_side=max_side,
        allow_download=allow_download,
    )
