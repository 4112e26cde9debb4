"""Attention pieces of the memory read-out: sine and rotary position encodings, dense,
rotary and top-k sparse attention."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hmhi_cli.model.ops import Linear, constant_tensors


@constant_tensors(maxsize=32)
def _sine_table(channels: int, height: int, width: int, temperature: float = 10000.0) -> Tensor:
    half = channels // 2
    eps = 1e-6
    ys = torch.arange(1, height + 1, dtype=torch.float32) / (height + eps) * 2 * math.pi
    xs = torch.arange(1, width + 1, dtype=torch.float32) / (width + eps) * 2 * math.pi
    dim_t = temperature ** (2 * torch.div(torch.arange(half), 2, rounding_mode="floor").float() / half)

    def encode(values: Tensor) -> Tensor:
        angles = values[:, None] / dim_t
        return torch.stack([angles[:, 0::2].sin(), angles[:, 1::2].cos()], dim=2).flatten(1)

    pos_y = encode(ys)[:, None, :].expand(height, width, half)
    pos_x = encode(xs)[None, :, :].expand(height, width, half)
    return torch.cat([pos_y, pos_x], dim=2).permute(2, 0, 1).contiguous()


@constant_tensors(maxsize=64)
def _sine_table_on(channels: int, height: int, width: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    return _sine_table(channels, height, width).to(device=device, dtype=dtype)


def sine_position(channels: int, height: int, width: int, like: Tensor) -> Tensor:
    """Normalised 2-D sine position embedding (channels, height, width), on ``like``'s device/dtype
    (cached there, so nothing is copied per frame)."""
    return _sine_table_on(channels, height, width, like.device, like.dtype)


@constant_tensors(maxsize=32)
def _rotary_table(head_dim: int, height: int, width: int, theta: float, device: torch.device) -> Tensor:
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 4)[: head_dim // 4].float() / head_dim))
    index = torch.arange(height * width)
    t_x = (index % width).float()
    t_y = torch.div(index, width, rounding_mode="floor").float()
    angles = torch.cat([torch.outer(t_x, freqs), torch.outer(t_y, freqs)], dim=-1)
    return torch.polar(torch.ones_like(angles), angles).to(device)


def rotary_table(head_dim: int, tokens: int, theta: float = 10000.0, device: torch.device | None = None) -> Tensor:
    """Axial 2-D rotary frequencies (tokens, head_dim/2) as complex numbers, for a square grid."""
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ValueError(f"rotary attention needs a square token grid, got {tokens} tokens")
    return _rotary_table(head_dim, side, side, theta, device or torch.device("cpu"))


def apply_rotary(x: Tensor, table: Tensor) -> Tensor:
    """Rotate consecutive channel pairs of ``x`` (..., tokens, head_dim); the table repeats
    along the token axis when ``x`` holds several frames' tokens."""
    tokens = x.shape[-2]
    repeats = tokens // table.shape[0]
    if repeats > 1:
        table = table.repeat(repeats, 1)
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * table).flatten(-2).type_as(x)


QUERY_CHUNK = 256
TOP_K_GROUP_SIZES = (16, 8, 4)


def _top_k_group_size(length: int, k: int) -> int | None:
    """The largest group size that splits a row of ``length`` into at least ``4 k`` groups, or
    None when none does (the row is then too short for grouping to pay)."""
    for size in TOP_K_GROUP_SIZES:
        if length % size == 0 and length // size >= 4 * k:
            return size
    return None


def row_top_k(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` largest entries of each row and their indices, in no particular order: the same
    set as ``scores.topk(k)``, found faster on long rows.

    The row is split into ``n / g`` interleaved groups of ``g`` entries (``g`` = 16, 8 or 4, the
    largest that leaves at least ``4 k`` groups). Each of the k largest entries lies in a group
    whose maximum is at least the k-th largest entry, and there are at most k such groups, so
    the k groups with the largest maxima hold all of them: ``topk`` then runs over ``n / g``
    group maxima and ``g k`` candidates instead of ``n`` entries.
    """
    length = scores.shape[-1]
    size = _top_k_group_size(length, k)
    if size is None:
        return scores.topk(k, dim=-1, sorted=False)
    groups = length // size
    maxima = scores.unflatten(-1, (size, groups)).amax(-2)
    best_groups = maxima.topk(k, dim=-1, sorted=False).indices
    members = torch.arange(0, length, groups, device=scores.device)
    candidates = (best_groups.unsqueeze(-1) + members).flatten(-2)
    values, chosen = scores.gather(-1, candidates).topk(k, dim=-1, sorted=False)
    return values, candidates.gather(-1, chosen)


def reference_attention(q: Tensor, k: Tensor, v: Tensor, top_k: int | None = None, dropout: float = 0.0) -> Tensor:
    """Attention as the reference implementation computes it: the full score matrix, top-k by
    masking the other scores to -inf, softmax, weighted sum. Kept as the baseline."""
    scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
    if top_k is not None and top_k < scores.shape[-1]:
        values, indices = scores.topk(top_k, dim=-1)
        scores = torch.full_like(scores, float("-inf")).scatter_(-1, indices, values)
    weights = torch.softmax(scores, dim=-1)
    if dropout:
        weights = F.dropout(weights, dropout)
    return weights @ v


def sparse_top_k_attention(q: Tensor, k: Tensor, v: Tensor, top_k: int, dropout: float = 0.0) -> Tensor:
    """Exactly :func:`reference_attention` with ``top_k``, cheaper: top-k through group maxima
    (:func:`row_top_k`), the softmax over the kept scores only, the weighted sum of the kept
    values as one ``embedding_bag`` (no gathered copy), and queries in chunks so the full score
    matrix never exists."""
    *batch, queries, channels = q.shape
    q = q.reshape(-1, queries, channels)
    k = k.reshape(-1, k.shape[-2], channels)
    keys = k.shape[1]
    values_table = v.reshape(-1, v.shape[-1])
    offsets = (torch.arange(q.shape[0], device=q.device) * keys).view(-1, 1, 1)
    scale = channels ** -0.5
    outputs = []
    for start in range(0, queries, QUERY_CHUNK):
        chunk = q[:, start:start + QUERY_CHUNK]
        scores, indices = row_top_k(chunk @ k.transpose(-2, -1), top_k)
        weights = torch.softmax(scores * scale, dim=-1)
        if dropout:
            weights = F.dropout(weights, dropout)
        summed = F.embedding_bag((indices + offsets).reshape(-1, top_k), values_table,
                                 per_sample_weights=weights.reshape(-1, top_k).to(values_table.dtype), mode="sum")
        outputs.append(summed.view(chunk.shape[0], chunk.shape[1], -1))
    return torch.cat(outputs, dim=1).view(*batch, queries, v.shape[-1])


def attend(q: Tensor, k: Tensor, v: Tensor, top_k: int | None = None, dropout: float = 0.0,
           fast: bool = True) -> Tensor:
    """softmax(q k^T / sqrt(d)) v, optionally keeping each query's ``top_k`` keys only.

    ``fast`` selects fused attention and the sparse top-k; otherwise the reference computation.
    """
    if not fast:
        return reference_attention(q, k, v, top_k, dropout)
    if top_k is None or top_k >= k.shape[-2]:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
    return sparse_top_k_attention(q, k, v, top_k, dropout)


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v/out projections (SAM-style)."""

    def __init__(self, dim: int, heads: int = 1, dropout: float = 0.1):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.q_proj = Linear(dim, dim)
        self.k_proj = Linear(dim, dim)
        self.v_proj = Linear(dim, dim)
        self.out_proj = Linear(dim, dim)
        self.fast = True

    def _split(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        return x.reshape(batch, tokens, self.heads, dim // self.heads).transpose(1, 2)

    def _position(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        return q, k

    def forward(self, q: Tensor, k: Tensor, v: Tensor, top_k: int | None = None) -> Tensor:
        q, k, v = self._split(self.q_proj(q)), self._split(self.k_proj(k)), self._split(self.v_proj(v))
        q, k = self._position(q, k)
        out = attend(q, k, v, top_k, self.dropout if self.training else 0.0, self.fast)
        batch, _, tokens, head_dim = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(batch, tokens, self.heads * head_dim))


class RotaryAttention(Attention):
    """Attention with axial 2-D rotary position encoding on queries and keys; keys that hold
    several frames reuse the query grid's frequencies for each frame."""

    def __init__(self, dim: int, heads: int = 1, dropout: float = 0.1, theta: float = 10000.0):
        super().__init__(dim, heads, dropout)
        self.theta = theta

    def _position(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        table = rotary_table(q.shape[-1], q.shape[-2], self.theta, q.device)
        return apply_rotary(q, table), apply_rotary(k, table)
