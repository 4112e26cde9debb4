"""The two memories of HMHI-Net: encoding a decoded frame into a memory entry, keeping a
bounded FIFO bank per video, and reading it out with a one-layer transformer."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hmhi_cli.model.attention import Attention, RotaryAttention, sine_position
from hmhi_cli.model.ops import Linear, gelu_fresh


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor.

    ``fast`` uses the fused layer norm on a channels-last view (the result is channels-last);
    otherwise the reference's explicit mean/variance formula.
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps
        self.fast = True

    def forward(self, x: Tensor) -> Tensor:
        if self.fast:
            normed = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
            return normed.permute(0, 3, 1, 2)
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class MaskDownSampler(nn.Module):
    """Mask probabilities at stride 4 -> an embedding at the memory level's stride."""

    def __init__(self, dim: int, hidden: int, stride: int):
        super().__init__()
        kernel = 2 * stride - 1
        self.encoder = nn.Sequential(
            nn.Conv2d(1, hidden, kernel, stride=stride, padding=kernel - stride),
            LayerNorm2d(hidden),
            nn.GELU(),
            nn.Conv2d(hidden, dim, 1),
            LayerNorm2d(dim),
            nn.GELU(),
        )

    def forward(self, mask: Tensor) -> Tensor:
        return self.encoder(mask)


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 -> LayerNorm2d -> Linear 4x -> GELU -> Linear, layer-scaled residual."""

    def __init__(self, dim: int, layer_scale: float = 1e-6):
        super().__init__()
        self.gamma = nn.Parameter(layer_scale * torch.ones(dim))
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pwconv1 = Linear(dim, 4 * dim)
        self.pwconv2 = Linear(4 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(gelu_fresh(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    def __init__(self, dim: int, num_layers: int = 2):
        super().__init__()
        self.layers = nn.ModuleList(ConvNeXtBlock(dim) for _ in range(num_layers))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """(level feature, raw logits) -> memory feature map of the same size."""

    def __init__(self, dim: int, mask_hidden: int, mask_stride: int):
        super().__init__()
        self.mask_downsampler = MaskDownSampler(dim, mask_hidden, mask_stride)
        self.pix_feat_proj = nn.Conv2d(dim, dim, 1)
        self.fuser = Fuser(dim)

    def forward(self, feature: Tensor, raw_logits: Tensor) -> Tensor:
        mask = self.mask_downsampler(torch.sigmoid(raw_logits))
        return self.fuser(self.pix_feat_proj(feature) + mask)


class MemoryLayer(nn.Module):
    """Pre-norm self-attention, cross-attention to the memory, and MLP, each residual."""

    def __init__(self, dim: int, ffn_dim: int, cross_attention: Attention, pos_at_self_attn: bool,
                 pos_at_cross_keys: bool, dropout: float = 0.1):
        super().__init__()
        self.self_attn = RotaryAttention(dim, dropout=dropout)
        self.cross_attn_image = cross_attention
        self.linear1 = Linear(dim, ffn_dim)
        self.linear2 = Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.pos_at_self_attn = pos_at_self_attn
        self.pos_at_cross_keys = pos_at_cross_keys

    def forward(self, x: Tensor, pos: Tensor, memory: Tensor, memory_pos: Tensor | None,
                top_k: int | None) -> Tensor:
        y = self.norm1(x)
        qk = y + pos if self.pos_at_self_attn else y
        x = x + self.dropout(self.self_attn(qk, qk, y))
        y = self.norm2(x)
        keys = memory + memory_pos if self.pos_at_cross_keys else memory
        x = x + self.dropout(self.cross_attn_image(y, keys, memory, top_k=top_k))
        y = self.linear2(self.dropout(self.linear1(self.norm3(x), relu=True)))
        return x + self.dropout(y)


class MemoryTransformer(nn.Module):
    """One :class:`MemoryLayer` on ``x + 0.1 * pos``, then a final LayerNorm."""

    def __init__(self, layer: MemoryLayer, dim: int):
        super().__init__()
        self.layers = nn.ModuleList([layer])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, pos: Tensor, memory: Tensor, memory_pos: Tensor | None = None,
                top_k: int | None = None) -> Tensor:
        x = x + 0.1 * pos
        for layer in self.layers:
            x = layer(x, pos, memory, memory_pos, top_k)
        return self.norm(x)


def to_tokens(x: Tensor) -> Tensor:
    """(B, C, h, w) -> (B, h*w, C)."""
    return x.flatten(2).transpose(1, 2)


def to_grid(tokens: Tensor, height: int, width: int) -> Tensor:
    """(B, h*w, C) -> (B, C, h, w)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, height, width)


@dataclass
class MemoryBank:
    """A per-video FIFO of memory entries (tokens and their position embeddings)."""

    limit: int
    features: list[Tensor] = field(default_factory=list)
    positions: list[Tensor] = field(default_factory=list)

    def add(self, feature: Tensor, position: Tensor) -> None:
        if len(self.features) == self.limit:
            self.features.pop(0)
            self.positions.pop(0)
        self.features.append(feature)
        self.positions.append(position)

    def __len__(self) -> int:
        return len(self.features)

    def tokens(self) -> tuple[Tensor, Tensor]:
        return torch.cat(self.features, dim=1), torch.cat(self.positions, dim=1)


class LevelMemory(nn.Module):
    """Memory at one encoder level: writes (feature, raw logits) and reads out a refined feature.

    ``sparse`` selects the pixel memory (rotary, top-k sparse cross-attention, no position on
    the keys); otherwise the semantic memory (dense cross-attention, keys carry position).
    """

    def __init__(self, dim: int, ffn_dim: int, mask_hidden: int, mask_stride: int, sparse: bool,
                 top_k: int, dropout: float = 0.1):
        super().__init__()
        self.dim = dim
        self.top_k = top_k if sparse else None

        def cross() -> Attention:
            return RotaryAttention(dim, dropout=dropout) if sparse else Attention(dim, dropout=dropout)

        # Present in published checkpoints but never called (the read-out uses its own copy):
        # kept for strict loading, frozen so that training and DDP ignore it.
        self.cross_attention = cross().requires_grad_(False)
        self.memory_encoder = MemoryEncoder(dim, mask_hidden, mask_stride)
        layer = MemoryLayer(dim, ffn_dim, cross(), pos_at_self_attn=not sparse, pos_at_cross_keys=not sparse,
                            dropout=dropout)
        self.pixel_transformer = MemoryTransformer(layer, dim)

    def position(self, feature: Tensor) -> Tensor:
        """Sine position embedding (B, h*w, C) for a (B, C, h, w) feature."""
        _, channels, height, width = feature.shape
        pos = sine_position(channels, height, width, feature)
        return to_tokens(pos.unsqueeze(0)).expand(feature.shape[0], -1, -1)

    def write(self, bank: MemoryBank, feature: Tensor, raw_logits: Tensor) -> None:
        encoded = self.memory_encoder(feature, raw_logits)
        bank.add(to_tokens(encoded), self.position(encoded))

    def read(self, bank: MemoryBank, feature: Tensor) -> Tensor:
        _, _, height, width = feature.shape
        memory, memory_pos = bank.tokens()
        out = self.pixel_transformer(to_tokens(feature), self.position(feature), memory, memory_pos, self.top_k)
        return to_grid(out, height, width)
