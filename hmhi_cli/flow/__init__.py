"""Optical flow for HMHI-Net: estimators, colour rendering, ``.flo`` files, streaming and dataset pre-computation.

HMHI-Net segments frame t from the RGB frame plus the optical flow from t to t+1 (for the last
frame: t to t-1), rendered with the Middlebury colour wheel as ``torchvision.utils.flow_to_image`` renders it.

Backends (one interface, :class:`FlowEstimator`):

- ``raft-large`` / ``raft-small``: torchvision RAFT; weights from a file, torchvision's cache, or
  (only when allowed) torchvision's download.
- ``dis``: OpenCV's DIS optical flow on grey frames; no weights, fast on CPU.
- ``auto``: RAFT when weights are given (large or small, as the file holds) or RAFT-large's are
  in torchvision's cache, else DIS.

Modules: :mod:`~hmhi_cli.flow.estimators` (the backends), :mod:`~hmhi_cli.flow.render` (colour
images), :mod:`~hmhi_cli.flow.flo` (``.flo`` files), :mod:`~hmhi_cli.flow.streams` (frames
paired for flow) and :mod:`~hmhi_cli.flow.precompute` (datasets); their public names are here.
"""

from hmhi_cli.flow.estimators import (
    DIS_MIN_SIDE,
    DIS_PRESETS,
    FLOW_BACKENDS,
    RAFT_MIN_SIDE,
    RAFT_WEIGHT_FILES,
    DisFlowEstimator,
    FlowEstimator,
    RaftFlowEstimator,
    raft_cache_path,
    raft_variant,
    resolve_device,
    resolve_flow_backend,
)
from hmhi_cli.flow.flo import FLO_MAGIC, read_flo, write_flo
from hmhi_cli.flow.precompute import (
    IMAGE_FORMATS,
    JPEG_QUALITY,
    FlowProgress,
    FlowTargets,
    PrecomputeSummary,
    flow_targets,
    parse_shard,
    precompute_flow,
    shard_sequences,
)
from hmhi_cli.flow.render import flow_to_rgb
from hmhi_cli.flow.streams import FlowFrame, flow_images, flow_partners, model_flow_images

__all__ = [
    "DIS_MIN_SIDE", "DIS_PRESETS", "FLOW_BACKENDS", "FLO_MAGIC", "IMAGE_FORMATS", "JPEG_QUALITY", "RAFT_MIN_SIDE",
    "RAFT_WEIGHT_FILES", "DisFlowEstimator", "FlowEstimator", "FlowFrame", "FlowProgress", "FlowTargets",
    "PrecomputeSummary", "RaftFlowEstimator", "flow_images", "flow_partners", "flow_targets", "flow_to_rgb",
    "model_flow_images", "parse_shard", "precompute_flow", "raft_cache_path", "raft_variant", "read_flo",
    "resolve_device", "resolve_flow_backend", "shard_sequences", "write_flo",
]
