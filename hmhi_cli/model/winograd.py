"""3x3 convolution with 2.25x fewer multiplications: Winograd's minimal filtering F(4x4, 3x3).

The output is cut into 4x4 tiles; each 6x6 input tile and each 3x3 filter are transformed into
a 36-point domain where the convolution becomes 36 independent channel-mixing matrix products
(``bmm``), and an output transform turns the products back into 4x4 tiles. The result equals
the direct convolution up to float rounding (about 1e-5 of the output's magnitude in float32).

The input transform is itself a fixed grouped convolution (kernel 6, stride 4), so the only
large temporaries are the transformed input and the products.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

TILE = 4
WINDOW = TILE + 2
POINTS = WINDOW * WINDOW

# Interpolation points 0, 1, -1, 2, -2 and infinity.
_INPUT_T = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
            (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))
_FILTER = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
           (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
_OUTPUT_T = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))


def transform_filter(weight: Tensor, splits: Sequence[int] | None = None) -> list[Tensor]:
    """(Cout, Cin, 3, 3) filter -> (36, Cout, Cin) transformed filter, as one piece per
    input-channel group of sizes ``splits`` (default: one group). 4x the filter's memory."""
    g = torch.tensor(_FILTER, dtype=weight.dtype, device=weight.device)
    u = torch.einsum("ij,ocjk,lk->ocil", g, weight.detach(), g)
    points = u.reshape(*u.shape[:2], POINTS).permute(2, 0, 1)
    return [piece.contiguous() for piece in points.split(list(splits or [weight.shape[1]]), dim=2)]


@lru_cache(maxsize=32)
def _input_transform(channels: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    b_t = torch.tensor(_INPUT_T, dtype=torch.float64)
    kernel = torch.kron(b_t, b_t).view(POINTS, 1, WINDOW, WINDOW)
    return kernel.repeat(channels, 1, 1, 1).to(device=device, dtype=dtype)


@lru_cache(maxsize=8)
def _output_transform(dtype: torch.dtype, device: torch.device) -> Tensor:
    a_t = torch.tensor(_OUTPUT_T, dtype=torch.float64)
    return torch.kron(a_t, a_t).to(device=device, dtype=dtype)


def _transform_input(x: Tensor, rows: int, cols: int) -> Tensor:
    """(N, C, H, W) -> (36, C, N * rows * cols): the transformed 6x6 input tiles."""
    batch, channels, height, width = x.shape
    x = x.contiguous()  # a channels-last input would give a layout that bmm has to copy
    transform = _input_transform(channels, x.dtype, x.device)
    if (rows * TILE, cols * TILE) == (height, width):
        points = F.conv2d(x, transform, stride=TILE, padding=1, groups=channels)
    else:
        padded = F.pad(x, (1, 1 + cols * TILE - width, 1, 1 + rows * TILE - height))
        points = F.conv2d(padded, transform, stride=TILE, groups=channels)
    return points.view(batch, channels, POINTS, rows * cols).permute(2, 1, 0, 3).reshape(POINTS, channels, -1)


def winograd_conv3x3(x: Tensor | Sequence[Tensor], filter_points: Sequence[Tensor], bias: Tensor | None) -> Tensor:
    """``conv2d(x, weight, bias, padding=1)`` for a 3x3 ``weight`` given as
    ``transform_filter(weight)``; any height, width and batch size.

    ``x`` may be a list of tensors whose channels, concatenated, are the input (with the filter
    split the same way): the concatenation is never built.
    """
    parts = [x] if isinstance(x, Tensor) else list(x)
    batch, _, height, width = parts[0].shape
    out_channels = filter_points[0].shape[1]
    rows, cols = -(-height // TILE), -(-width // TILE)
    products = None
    for part, points_filter in zip(parts, filter_points, strict=True):
        points = _transform_input(part, rows, cols)
        if products is None:
            products = torch.bmm(points_filter, points)
        else:
            products.baddbmm_(points_filter, points)
    tiles = _output_transform(parts[0].dtype, parts[0].device) @ products.view(POINTS, -1)
    tiles = tiles.view(TILE, TILE, out_channels, batch, rows, cols).permute(3, 2, 4, 0, 5, 1)
    out = tiles.new_empty(tiles.shape)
    if bias is None:
        out.copy_(tiles)
    else:
        torch.add(tiles, bias.view(1, -1, 1, 1, 1, 1), out=out)
    out = out.view(batch, out_channels, rows * TILE, cols * TILE)
    if (rows * TILE, cols * TILE) != (height, width):
        out = out[:, :, :height, :width].contiguous()
    return out
