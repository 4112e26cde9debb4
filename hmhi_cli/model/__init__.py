"""HMHI-Net (ACM MM 2025): hierarchical memory with heterogeneous interaction.

>>> from hmhi_cli.model import build_model
>>> net = build_model("mit_b1", memory_limit=3)
>>> logits = net.forward_clip(images, flows)      # (B,T,3,S,S) x2 -> (B,T,1,S,S)
>>> stream = net.stream(); logit_t = stream.step(image_t, flow_t)
"""

from __future__ import annotations

from hmhi_cli.model.config import CONFIGS, ModelConfig, get_config
from hmhi_cli.model.network import HMHINet, VideoStream

__all__ = ["CONFIGS", "HMHINet", "ModelConfig", "VideoStream", "build_model", "get_config"]


def build_model(encoder: str = "mit_b1", memory_limit: int = 3, dropout: float = 0.1, drop_path: float = 0.1) -> HMHINet:
    """Build an HMHI-Net with random weights, in ``eval()`` mode.

    ``dropout`` (memory transformers) and ``drop_path`` (encoder) act only in training mode.
    """
    if memory_limit < 1:
        raise ValueError("memory_limit must be at least 1")
    return HMHINet(get_config(encoder), memory_limit=memory_limit, dropout=dropout, drop_path=drop_path)
