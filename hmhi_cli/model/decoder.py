"""CBAM decoder: from the stride-32 level up to stride 4, one logit channel."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Conv(nn.Module):
    """A convolution, optionally followed by ReLU (parameters under ``.conv``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
                 relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, groups=groups)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return F.relu(x) if self.relu else x


class CBAM(nn.Module):
    """3x3 conv, then channel attention (shared MLP on avg and max pool) and spatial attention."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = Conv(channels, channels, 3, relu=False)
        self.conv2 = nn.Sequential(Conv(channels, channels, 1), Conv(channels, channels, 1, relu=False))
        self.conv3 = nn.Sequential(Conv(2, 16, 3), Conv(16, 1, 3, relu=False))

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        pooled = torch.cat([F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)], dim=0)
        gate = self.conv2(pooled)
        x = x * torch.sigmoid(gate[: x.shape[0]] + gate[x.shape[0]:])
        summary = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv3(summary))


class CBAMDecoder(nn.Module):
    """Top-down decoder over four levels; returns stride-4 ("raw") logits."""

    def __init__(self, widths: tuple[int, int, int, int], dim: int):
        super().__init__()
        for step in range(1, 5):
            level_width = widths[4 - step]
            self.add_module(f"conv{step}", Conv(level_width, dim, 1))
            self.add_module(f"blend{step}", Conv(dim if step == 1 else 2 * dim, dim, 3))
            self.add_module(f"cbam{step}", CBAM(dim))
        self.predictor = Conv(dim, 1, 3, relu=False)

    def forward(self, levels: list[Tensor]) -> Tensor:
        x = self.cbam1(self.blend1(self.conv1(levels[3])))
        for step in range(2, 5):
            up = F.interpolate(x, scale_factor=2, mode="bicubic")
            lateral = getattr(self, f"conv{step}")(levels[4 - step])
            x = torch.cat([lateral, up], dim=1)
            x = getattr(self, f"cbam{step}")(getattr(self, f"blend{step}")(x))
        return self.predictor(x)
