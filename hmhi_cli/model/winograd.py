"""3x3 convolution with 2.25x fewer multiplications: Winograd's minimal filtering F(4x4, 3x3).

The output is cut into 4x4 tiles; each 6x6 input tile and each 3x3 filter are transformed into
a 36-point domain where the convolution becomes 36 independent channel-mixing matrix products
(``bmm``), and an output transform turns the products back into 4x4 tiles. The result equals
the direct convolution up to float rounding (about 1e-5 of the output's magnitude in float32).

Everything runs channels-last: the 6x6 tiles are gathered position by position with channels
innermost (contiguous copies), both transforms are single matrix products with the 36x36 and
16x36 transform matrices, and the result is a channels-last tensor, so a following Winograd
convolution reads it without a transpose.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from hmhi_cli.model.ops import constant_tensors

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
    """(Cout, Cin, 3, 3) filter -> (36, Cin, Cout) transformed filter, as one piece per
    input-channel group of sizes ``splits`` (default: one group). 4x the filter's memory."""
    g = torch.tensor(_FILTER, dtype=weight.dtype, device=weight.device)
    u = torch.einsum("ij,ocjk,lk->ocil", g, weight.detach(), g)
    points = u.reshape(*u.shape[:2], POINTS).permute(2, 1, 0)
    return [piece.contiguous() for piece in points.split(list(splits or [weight.shape[1]]), dim=1)]


@constant_tensors(maxsize=8)
def _transforms(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    b_t = torch.tensor(_INPUT_T, dtype=torch.float64)
    a_t = torch.tensor(_OUTPUT_T, dtype=torch.float64)
    return torch.kron(b_t, b_t).to(device, dtype), torch.kron(a_t, a_t).to(device, dtype)


def _transform_input(x: Tensor, rows: int, cols: int) -> Tensor:
    """(N, C, H, W) -> (36, N * rows * cols, C): the transformed 6x6 input tiles."""
    batch, channels, height, width = x.shape
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1 + cols * TILE - width, 1, 1 + rows * TILE - height))
    padded_height, padded_width = padded.shape[1:3]
    row_stride = padded_width * channels
    tiles = padded.as_strided(
        (WINDOW, WINDOW, batch, rows, cols, channels),
        (row_stride, channels, padded_height * row_stride, TILE * row_stride, TILE * channels, 1))
    points = _transforms(x.dtype, x.device)[0] @ tiles.reshape(POINTS, -1)
    return points.view(POINTS, batch * rows * cols, channels)


def winograd_conv3x3(x: Tensor | Sequence[Tensor], filter_points: Sequence[Tensor], bias: Tensor | None) -> Tensor:
    """``conv2d(x, weight, bias, padding=1)`` for a 3x3 ``weight`` given as
    ``transform_filter(weight)``; any height, width and batch size. The result is
    channels-last in memory.

    ``x`` may be a list of tensors whose channels, concatenated, are the input (with the filter
    split the same way): the concatenation is never built.
    """
    parts = [x] if isinstance(x, Tensor) else list(x)
    batch, _, height, width = parts[0].shape
    out_channels = filter_points[0].shape[2]
    rows, cols = -(-height // TILE), -(-width // TILE)
    products = None
    for part, points_filter in zip(parts, filter_points, strict=True):
        points = _transform_input(part, rows, cols)
        if products is None:
            products = torch.bmm(points, points_filter)
        else:
            products.baddbmm_(points, points_filter)
    tiles = _transforms(products.dtype, products.device)[1] @ products.view(POINTS, -1)
    tiles = tiles.view(TILE, TILE, batch, rows, cols, out_channels).permute(2, 3, 0, 4, 1, 5)
    out = tiles.new_empty(tiles.shape)
    if bias is None:
        out.copy_(tiles)
    else:
        torch.add(tiles, bias, out=out)
    out = out.view(batch, rows * TILE, cols * TILE, out_channels).permute(0, 3, 1, 2)
    if (rows * TILE, cols * TILE) != (height, width):
        out = out[:, :, :height, :width].contiguous(memory_format=torch.channels_last)
    return out
