"""Optical flow for HMHI-Net: estimators, colour rendering, ``.flo`` files, streaming and dataset pre-computation.

HMHI-Net segments frame t from the RGB frame plus the optical flow from t to t+1 (for the last
frame: t to t-1), rendered with the Middlebury colour wheel as ``torchvision.utils.flow_to_image`` renders it.

Backends (one interface, :class:`FlowEstimator`):

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
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, NamedTuple
from urllib.error import URLError

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from hmhi_cli.atomic import remove_partials, write_bytes
from hmhi_cli.errors import InputError, OutputError, WeightsError, WriteError
from hmhi_cli.video import read_image
from hmhi_cli.weights import read_state_dict

if TYPE_CHECKING:
    from hmhi_cli.data.layouts import Sequence

FLOW_BACKENDS = ("auto", "raft-large", "raft-small", "dis")
DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
IMAGE_FORMATS = ("jpg", "png")
FLO_MAGIC = 202021.25
RAFT_MIN_SIDE = 128  # RAFT's correlation pyramid needs feature maps of at least 16x16 (stride 8)
JPEG_QUALITY = 95
_DAVIS_RESOLUTION = re.compile(r"^(\d+p|full-resolution)$", re.IGNORECASE)


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


def _check_flow(flow: np.ndarray) -> None:
    if not isinstance(flow, np.ndarray) or flow.ndim != 3 or flow.shape[2] != 2:
        raise InputError(f"a flow field must be an HxWx2 array, got shape {getattr(flow, 'shape', None)}")


def _colour_wheel() -> np.ndarray:
    """The Middlebury colour wheel (Baker et al.): 55 hues in six ramps between red, yellow,
    green, cyan, blue and magenta, as float32 0-255 RGB rows."""
    ramps = ((15, (255, 0, 0), (255, 255, 0)), (6, (255, 255, 0), (0, 255, 0)), (4, (0, 255, 0), (0, 255, 255)),
             (11, (0, 255, 255), (0, 0, 255)), (13, (0, 0, 255), (255, 0, 255)), (6, (255, 0, 255), (255, 0, 0)))
    rows = []
    for steps, start, end in ramps:
        rising = np.floor(255 * np.arange(steps, dtype=np.float32) / steps)[:, None]
        rows.append(np.asarray(start, np.float32) + np.sign(np.subtract(end, start)).astype(np.float32) * rising)
    return np.concatenate(rows)


_WHEEL = _colour_wheel()


def flow_to_rgb(flow: np.ndarray) -> np.ndarray:
    """Render an HxWx2 flow as an HxWx3 uint8 RGB image, as ``torchvision.utils.flow_to_image``
    does (the tests compare the two): hue is the direction on the Middlebury colour wheel,
    saturation the magnitude relative to this frame's largest flow vector (zero renders white).

    Plain numpy, single-threaded: it runs in the decode/flow thread beside the model, where
    torch's own thread pool would compete with the model's.
    """
    _check_flow(flow)
    flow = np.asarray(flow, dtype=np.float32)
    norm = np.sqrt(np.square(flow[..., 0]) + np.square(flow[..., 1]))
    scale = np.float32(1.0) / (norm.max() + np.finfo(np.float32).eps)
    u, v = flow[..., 0] * scale, flow[..., 1] * scale
    radius = norm * scale
    position = (np.arctan2(-v, -u) / np.float32(np.pi) + 1) / 2 * np.float32(len(_WHEEL) - 1)
    floor = np.floor(position)
    weight = (position - floor)[..., None]
    lower = floor.astype(np.intp)
    upper = np.where(lower + 1 == len(_WHEEL), 0, lower + 1)
    colour = ((1 - weight) * _WHEEL[lower] + weight * _WHEEL[upper]) / np.float32(255)
    colour = 1 - radius[..., None] * (1 - colour)
    return np.floor(np.float32(255) * colour).astype(np.uint8)


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


class FlowFrame(NamedTuple):
    """One frame with the flow HMHI-Net pairs it with."""

    frame: np.ndarray  # HxWx3 uint8 RGB
    flow_rgb: np.ndarray  # HxWx3 uint8, flow rendered by flow_to_rgb
    flow_raw: np.ndarray  # HxWx2 float32 (dx, dy) in pixels


def flow_partners(frames: Iterable[np.ndarray],
                  after_last: Callable[[], np.ndarray | None] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Each frame in order with the frame its flow goes to: the next one, for the last frame the
    one ``after_last()`` gives (the frame after a part of a video), else the previous one, None
    for a one-frame video. Reads one frame ahead, so memory does not grow with the video length."""
    iterator = iter(frames)
    current = next(iterator, None)
    if current is None:
        return
    previous = None
    for following in iterator:
        yield current, following
        previous, current = current, following
    following = after_last() if after_last else None
    yield current, previous if following is None else following


def flow_images(frames: Iterable[np.ndarray], estimator: FlowEstimator) -> Iterator[FlowFrame]:
    """Yield each frame with its flow at the frame's size (see :func:`flow_partners`); a
    one-frame video gets a zero flow."""
    for frame, partner in flow_partners(frames):
        if partner is None:
            _check_pair(frame, frame)
            flow = np.zeros((*frame.shape[:2], 2), dtype=np.float32)
        else:
            flow = estimator.estimate(frame, partner)
        yield FlowFrame(frame, flow_to_rgb(flow), flow)


def model_flow_images(frames: Iterable[np.ndarray], estimator: FlowEstimator, size: int,
                      after_last: Callable[[], np.ndarray | None] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield each frame with its flow image as the model sees it (:meth:`FlowEstimator.flow_image`);
    ``after_last`` as in :func:`flow_partners`."""
    for frame, partner in flow_partners(frames, after_last):
        yield frame, estimator.flow_image(frame, partner, size)


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


def _write_image(path: Path, rgb: np.ndarray) -> None:
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if path.suffix == ".jpg" else []
    ok, encoded = cv2.imencode(path.suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise OutputError(f"cannot encode image: {path}")
    try:
        write_bytes(path, encoded.tobytes())
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from exc


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
            _write_image(target.image, flow_to_rgb(flow))
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
