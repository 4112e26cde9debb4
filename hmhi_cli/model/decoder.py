"""CBAM decoder: from the stride-32 level up to stride 4, one logit channel."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hmhi_cli.model.ops import cpu_float32_inference, tap_sum_conv3x3, upsample_bicubic
from hmhi_cli.model.winograd import transform_filter, winograd_conv3x3


WINOGRAD_MIN_CHANNELS = 128
WINOGRAD_MIN_PIXELS = 32 * 32  # smaller maps gain nothing measurable and the filter cache costs 4x its weights
TAP_SUM_MAX_OUT_CHANNELS = 4
TAP_SUM_MIN_IN_CHANNELS = 64


class Conv(nn.Module):
    """A convolution, optionally followed by ReLU (parameters under ``.conv``).

    With ``fast`` set, in float32 CPU inference, wide 3x3 convolutions run as Winograd
    F(4x4, 3x3) (2.25x fewer multiplications) and 3x3 convolutions to a few channels as one
    matrix product plus shifted sums; both equal the direct convolution up to rounding.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
                 relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, groups=groups)
        self.relu = relu
        self.fast = True
        plain_3x3 = kernel == 3 and stride == 1 and groups == 1
        self.winograd = plain_3x3 and min(in_channels, out_channels) >= WINOGRAD_MIN_CHANNELS
        self.tap_sum = (plain_3x3 and out_channels <= TAP_SUM_MAX_OUT_CHANNELS
                        and in_channels >= TAP_SUM_MIN_IN_CHANNELS)
        self._filter_points: list[Tensor] = []
        self._filter_key: tuple | None = None

    def _winograd_filter(self, splits: tuple[int, ...]) -> list[Tensor]:
        weight = self.conv.weight
        key = (weight.data_ptr(), weight._version, weight.dtype, splits)
        if key != self._filter_key:
            self._filter_points, self._filter_key = transform_filter(weight, splits), key
        return self._filter_points

    def forward(self, x: Tensor | list[Tensor]) -> Tensor:
        """``x``: the input, or a list of tensors whose channels concatenated are the input."""
        parts = [x] if isinstance(x, Tensor) else x
        fast = self.fast and cpu_float32_inference(parts[0])
        if fast and self.winograd and parts[0].shape[-2] * parts[0].shape[-1] >= WINOGRAD_MIN_PIXELS:
            x = winograd_conv3x3(parts, self._winograd_filter(tuple(p.shape[1] for p in parts)), self.conv.bias)
        elif fast and self.tap_sum and len(parts) == 1:
            x = tap_sum_conv3x3(parts[0], self.conv.weight, self.conv.bias)
        else:
            x = self.conv(parts[0] if len(parts) == 1 else torch.cat(parts, dim=1))
        return F.relu(x, inplace=True) if self.relu else x


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
        self.fast = True

    def forward(self, levels: list[Tensor]) -> Tensor:
        x = self.cbam1(self.blend1(self.conv1(levels[3])))
        for step in range(2, 5):
            up = upsample_bicubic(x, 2, self.fast)
            lateral = getattr(self, f"conv{step}")(levels[4 - step])
            x = getattr(self, f"cbam{step}")(getattr(self, f"blend{step}")([lateral, up]))
        return self.predictor(x)
