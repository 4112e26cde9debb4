"""MiT (SegFormer) encoder family, shared by the frame and its flow image, with flow-only adapters.

The frame and the flow image go through the encoder as one batch ``cat([image, flow])``.
Low-rank adapters touch only the flow half: on the attention query, on the keys/values and
after each block. Parameter names follow the NVlabs SegFormer layout so that ImageNet MiT
weights and published HMHI-Net checkpoints load directly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from hmhi_cli.model.attention import attend
from hmhi_cli.model.config import ModelConfig
from hmhi_cli.model.ops import Linear, add_to_half, conv2d_gelu

BLOCK_NORM_EPS = 1e-6


class Adapter(nn.Module):
    """LayerNorm -> down projection (d/2) -> ReLU -> up projection."""

    def __init__(self, dim: int, out_dim: int | None = None):
        super().__init__()
        self.adapter_layer_norm_before = nn.LayerNorm(dim)
        self.down_proj = Linear(dim, dim // 2)
        self.up_proj = Linear(dim // 2, out_dim or dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.up_proj(self.down_proj(self.adapter_layer_norm_before(x), relu=True))


def add_to_flow_half(values: Tensor, source: Tensor, adapter: Callable[[Tensor], Tensor]) -> Tensor:
    """Add ``adapter(source's flow half)`` to the flow half (second half of the batch) of
    ``values``, a fresh tensor (updated in place when autograd is off)."""
    return add_to_half(values, adapter(source[source.shape[0] // 2:]))


class EfficientAttention(nn.Module):
    """Spatial-reduction attention of MiT, with flow adapters on the query and keys/values."""

    def __init__(self, dim: int, heads: int, reduction: int):
        super().__init__()
        self.heads = heads
        self.reduction = reduction
        self.q = Linear(dim, dim)
        self.q_adapter = Adapter(dim)
        self.kv = Linear(dim, 2 * dim)
        self.kv_adapter = Adapter(dim, 2 * dim)
        self.proj = Linear(dim, dim)
        self.fast = True
        if reduction > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=reduction, stride=reduction)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        batch, tokens, dim = x.shape
        head_dim = dim // self.heads
        q = add_to_flow_half(self.q(x), x, self.q_adapter)
        if self.reduction > 1:
            grid = x.transpose(1, 2).reshape(batch, dim, height, width)
            reduced = self.norm(self.sr(grid).flatten(2).transpose(1, 2))
        else:
            reduced = x
        kv = add_to_flow_half(self.kv(reduced), reduced, self.kv_adapter)
        q = q.reshape(batch, tokens, self.heads, head_dim).transpose(1, 2)
        k, v = kv.reshape(batch, -1, 2, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        out = attend(q, k, v, fast=self.fast)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class DepthwiseConvGelu(nn.Module):
    """3x3 depthwise convolution on a token sequence laid out as an image, then GELU."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.fast = True

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        batch, _, channels = x.shape
        grid = x.transpose(1, 2).reshape(batch, channels, height, width)
        return conv2d_gelu(grid, self.dwconv, self.fast).flatten(2).transpose(1, 2)


class MixFFN(nn.Module):
    """fc1 -> depthwise 3x3 conv -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = Linear(dim, hidden)
        self.dwconv = DepthwiseConvGelu(hidden)
        self.fc2 = Linear(hidden, dim)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        return self.fc2(self.dwconv(self.fc1(x), height, width))


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch per sample while training."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Block(nn.Module):
    """Pre-norm transformer block; the flow half then passes through its adapter."""

    def __init__(self, dim: int, heads: int, reduction: int, mlp_ratio: int, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.attn = EfficientAttention(dim, heads, reduction)
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.mlp = MixFFN(dim, dim * mlp_ratio)
        self.adapter = Adapter(dim)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), height, width))
        x = x + self.drop_path(self.mlp(self.norm2(x), height, width))
        return add_to_flow_half(x, x, self.adapter)


class OverlapPatchEmbed(nn.Module):
    """Strided convolution to tokens, then LayerNorm."""

    def __init__(self, in_channels: int, dim: int, kernel: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> tuple[Tensor, int, int]:
        x = self.proj(x)
        height, width = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), height, width


class MixTransformerEncoder(nn.Module):
    """Four-stage MiT encoder returning feature maps at strides 4, 8, 16 and 32."""

    def __init__(self, config: ModelConfig, drop_path_rate: float = 0.1):
        super().__init__()
        widths = config.widths
        rates = torch.linspace(0, drop_path_rate, sum(config.depths)).tolist()
        for stage in range(4):
            in_channels = 3 if stage == 0 else widths[stage - 1]
            kernel, stride = (7, 4) if stage == 0 else (3, 2)
            self.add_module(f"patch_embed{stage + 1}", OverlapPatchEmbed(in_channels, widths[stage], kernel, stride))
        start = 0
        for stage in range(4):
            depth = config.depths[stage]
            blocks = nn.ModuleList(
                Block(widths[stage], config.heads[stage], config.reduction_ratios[stage], config.mlp_ratio, rates[start + i])
                for i in range(depth)
            )
            start += depth
            self.add_module(f"block{stage + 1}", blocks)
            self.add_module(f"norm{stage + 1}", nn.LayerNorm(widths[stage], eps=BLOCK_NORM_EPS))

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for stage in range(1, 5):
            tokens, height, width = getattr(self, f"patch_embed{stage}")(x)
            for block in getattr(self, f"block{stage}"):
                tokens = block(tokens, height, width)
            tokens = getattr(self, f"norm{stage}")(tokens)
            x = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, height, width)
            features.append(x)
        return features
