"""Small tensor helpers of the fast path: a linear layer with the bias added inside the matrix
product, activations and adds without a large temporary, bicubic upsampling as two matrix
products, a 3x3 convolution to few channels as one matrix product."""

from __future__ import annotations

import functools
from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

T = TypeVar("T")


def constant_tensors(maxsize: int) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """``lru_cache`` for functions that build constant tables of tensors, which are built with
    autograd off and outside inference mode: a table first built while segmenting
    (``torch.inference_mode``) stays usable by training in the same process."""
    def decorate(function: Callable[..., T]) -> Callable[..., T]:
        @lru_cache(maxsize=maxsize)
        @functools.wraps(function)
        def build(*args):
            with torch.inference_mode(False), torch.no_grad():
                return function(*args)
        return build
    return decorate


@lru_cache(maxsize=1)
def _onednn_fusion_available() -> bool:
    try:
        torch.ops.mkldnn._linear_pointwise.default
        torch.ops.mkldnn._convolution_pointwise.default
    except (AttributeError, RuntimeError):
        return False
    return torch.backends.mkldnn.is_available()


def cpu_float32_inference(x: Tensor) -> bool:
    """Whether ``x`` is in float32 CPU inference (no autograd, no autocast): where the fast
    CPU kernels apply."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu"))


def _fusable(x: Tensor) -> bool:
    return cpu_float32_inference(x) and _onednn_fusion_available()


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters) whose float32 CPU inference, with ``fast`` set, runs as
    oneDNN's linear: the bias (and an optional ReLU) is applied as the product is written,
    where PyTorch's ``addmm`` first copies the bias into the whole output (a full extra pass
    over memory)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.fast = True

    def forward(self, x: Tensor, relu: bool = False) -> Tensor:
        if self.fast and _fusable(x):
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "relu" if relu else "none", [], "")
        out = F.linear(x, self.weight, self.bias)
        return F.relu(out, inplace=True) if relu else out


def conv2d_gelu(x: Tensor, conv: nn.Conv2d, fast: bool = True) -> Tensor:
    """``gelu(conv(x))``; with ``fast``, in float32 CPU inference, oneDNN applies the GELU as it
    writes the convolution's output (one pass over it instead of three)."""
    if fast and _fusable(x):
        return torch.ops.mkldnn._convolution_pointwise(x, conv.weight, conv.bias, conv.padding, conv.stride,
                                                       conv.dilation, conv.groups, "gelu", [], "none")
    return gelu_fresh(conv(x))


def gelu_fresh(x: Tensor) -> Tensor:
    """GELU of a tensor nobody else holds: in place when autograd is off, else out of place."""
    if torch.is_grad_enabled():
        return F.gelu(x)
    return torch.ops.aten.gelu_(x)


def add_to_half(values: Tensor, update: Tensor) -> Tensor:
    """``values`` with ``update`` added to its second half along the batch axis.

    In place when autograd is off (``values`` must be a fresh tensor nobody else holds);
    otherwise a new tensor, so that autograd sees no in-place change of a saved value.
    """
    half = values.shape[0] // 2
    if torch.is_grad_enabled():
        return torch.cat([values[:half], values[half:] + update], dim=0)
    values[half:] += update
    return values


@constant_tensors(maxsize=32)
def _bicubic_matrix(length: int, scale: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    impulses = torch.eye(length, dtype=torch.float64).view(length, 1, 1, length)
    matrix = F.interpolate(impulses, scale_factor=(1, scale), mode="bicubic", align_corners=False)
    return matrix.view(length, length * scale).to(device=device, dtype=dtype)


def _channels_last(x: Tensor) -> bool:
    return x.shape[1] > 1 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def upsample_bicubic(x: Tensor, scale: int, fast: bool = True) -> Tensor:
    """``F.interpolate(x, scale_factor=scale, mode="bicubic")`` for (N, C, H, W).

    ``fast`` computes it as ``rows @ x @ columns`` with the interpolation matrices (built by
    interpolating unit impulses, so borders are handled exactly as ``F.interpolate`` does):
    two large matrix products instead of PyTorch's per-pixel CPU kernel, ~4x faster here. A
    channels-last input gives a channels-last result without a transpose.
    """
    if not fast:
        return F.interpolate(x, scale_factor=scale, mode="bicubic")
    batch, channels, height, width = x.shape
    columns = _bicubic_matrix(width, scale, x.dtype, x.device)
    rows = _bicubic_matrix(height, scale, x.dtype, x.device)
    if not _channels_last(x):
        return torch.matmul(rows.t(), torch.matmul(x, columns))
    pixels = x.permute(0, 2, 3, 1)  # (N, H, W, C), contiguous
    wide = torch.matmul(columns.t(), pixels)  # (N, H, sW, C)
    tall = torch.matmul(rows.t(), wide.reshape(batch, height, -1))  # (N, sH, sW * C)
    return tall.view(batch, height * scale, width * scale, channels).permute(0, 3, 1, 2)


def tap_sum_conv3x3(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``conv2d(x, weight, bias, padding=1)`` for a 3x3 filter with few output channels: one
    matrix product gives every tap's response, then the nine shifted responses are summed
    (a direct convolution with one output channel uses the cores poorly)."""
    batch, channels, height, width = x.shape
    out_channels = weight.shape[0]
    taps = weight.permute(2, 3, 0, 1).reshape(9 * out_channels, channels)
    pixels = x.permute(0, 2, 3, 1).reshape(batch, height * width, channels)
    responses = torch.matmul(pixels, taps.t()).view(batch, height, width, 9 * out_channels)
    responses = F.pad(responses, (0, 0, 1, 1, 1, 1))
    out = x.new_zeros(batch, height, width, out_channels) if bias is None else \
        bias.expand(batch, height, width, out_channels).clone()
    for tap in range(9):
        row, col = divmod(tap, 3)
        out += responses[:, row:row + height, col:col + width, tap * out_channels:(tap + 1) * out_channels]
    return out.permute(0, 3, 1, 2)
