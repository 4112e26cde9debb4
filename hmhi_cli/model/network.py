"""HMHI-Net: shared frame/flow encoder, hierarchical memory with heterogeneous interaction,
CBAM decoder; clip and streaming inference."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hmhi_cli.model.attention import Attention
from hmhi_cli.model.config import ModelConfig
from hmhi_cli.model.decoder import CBAM, CBAMDecoder, Conv
from hmhi_cli.model.encoders import build_encoder
from hmhi_cli.model.memory import (
    LevelMemory,
    MemoryBank,
    MemoryLayer,
    MemoryTransformer,
    to_grid,
    to_tokens,
)
from hmhi_cli.model.ops import Linear, upsample_bicubic

PIXEL_LEVEL = 1
SEMANTIC_LEVEL = 3


class HMHINet(nn.Module):
    """The network. Module names match the published checkpoints' state-dict keys."""

    def __init__(self, config: ModelConfig, memory_limit: int = 3, dropout: float = 0.1, drop_path: float = 0.1):
        super().__init__()
        self.config = config
        self.memory_limit = memory_limit
        widths = config.widths
        pixel_dim, semantic_dim = widths[PIXEL_LEVEL], widths[SEMANTIC_LEVEL]
        self.backbone = build_encoder(config, drop_path_rate=drop_path)
        self.decode_head = CBAMDecoder(widths, config.decoder_dim)
        self.Mem0 = LevelMemory(pixel_dim, config.memory_ffn_dim, config.mask_hidden[0], mask_stride=2,
                                sparse=True, top_k=config.top_k, dropout=dropout)
        self.Mem1 = LevelMemory(semantic_dim, config.memory_ffn_dim, config.mask_hidden[1], mask_stride=8,
                                sparse=False, top_k=config.top_k, dropout=dropout)
        self.pixel_down_sample = nn.Sequential(
            Conv(pixel_dim, semantic_dim, 7, stride=4, groups=pixel_dim),
            Conv(semantic_dim, semantic_dim, 1),
        )
        self.pixel_to_obj_cbam = CBAM(2 * semantic_dim)
        self.p2o_down_linear = Conv(2 * semantic_dim, semantic_dim, 1)
        self.obj_reduce = nn.Sequential(Linear(semantic_dim, pixel_dim), nn.ReLU(inplace=True))
        sgim_layer = MemoryLayer(pixel_dim, config.memory_ffn_dim, Attention(pixel_dim, dropout=dropout),
                                 pos_at_self_attn=True, pos_at_cross_keys=False, dropout=dropout)
        self.obj_to_pixel = MemoryTransformer(sgim_layer, pixel_dim)
        self.fast = True
        self.eval()

    def use_fast_kernels(self, fast: bool = True) -> HMHINet:
        """The fast kernels (default: fused attention, sparse top-k read-out, oneDNN-fused linear
        layers, Winograd decoder convolutions, matrix bicubic upsampling, ...), or the
        reference's plain computation (the speed baseline). Both match the fixture."""
        for module in self.modules():
            if hasattr(module, "fast"):
                module.fast = fast
        return self

    def encode(self, image: Tensor, flow: Tensor) -> list[Tensor]:
        """Encode frame and flow as one batch; return the four summed levels."""
        features = self.backbone(torch.cat([image, flow], dim=0))
        half = image.shape[0]
        return [f[:half] + f[half:] for f in features]

    def decode(self, levels: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Return (full-resolution logits, stride-4 raw logits)."""
        raw = self.decode_head(levels)
        return upsample_bicubic(raw, 4, self.fast), raw

    def semantic_to_pixel(self, pixel: Tensor, semantic: Tensor) -> Tensor:
        """SGIM: the pixel read-out attends to reduced semantic tokens."""
        _, _, height, width = pixel.shape
        memory = self.obj_reduce(to_tokens(semantic))
        out = self.obj_to_pixel(to_tokens(pixel), self.Mem0.position(pixel), memory)
        return to_grid(out, height, width)

    def pixel_to_semantic(self, pixel: Tensor, semantic: Tensor) -> Tensor:
        """PLAM: the downsampled pixel read-out refines the semantic read-out."""
        fused = self.pixel_to_obj_cbam(torch.cat([self.pixel_down_sample(pixel), semantic], dim=1))
        return self.p2o_down_linear(fused) + semantic

    def stream(self, memory_limit: int | None = None) -> VideoStream:
        """Start a video: per-video memory banks, one :meth:`VideoStream.step` per frame."""
        return VideoStream(self, memory_limit or self.memory_limit)

    def forward_clip(self, images: Tensor, flows: Tensor, memory_limit: int | None = None) -> Tensor:
        """(B, T, 3, S, S) frames and flow images -> (B, T, 1, S, S) logits.

        Frame 0 is encoded without read-out; every later frame reads the banks, then writes.
        """
        if images.shape != flows.shape or images.ndim != 5:
            raise ValueError(f"expected two (B, T, 3, S, S) tensors, got {tuple(images.shape)} and {tuple(flows.shape)}")
        stream = self.stream(memory_limit)
        return torch.stack([stream.step(images[:, t], flows[:, t]) for t in range(images.shape[1])], dim=1)

    forward = forward_clip


@dataclass
class VideoStream:
    """Per-video state: the two memory banks. Memory use is bounded by the memory limit."""

    net: HMHINet
    memory_limit: int

    def __post_init__(self) -> None:
        self.pixel_bank = MemoryBank(self.memory_limit)
        self.semantic_bank = MemoryBank(self.memory_limit)
        self.frames_seen = 0

    def step(self, image: Tensor, flow: Tensor, trace: dict[str, Tensor] | None = None) -> Tensor:
        """(B, 3, S, S) frame and flow image -> (B, 1, S, S) logits; updates the memory.

        ``trace``, when given, receives the intermediate tensors (encoder levels, read-outs,
        SGIM/PLAM results, raw logits) for inspection.
        """
        net = self.net
        size = image.shape[-1]
        if image.shape != flow.shape or image.ndim != 4 or image.shape[-2] != size or size % 32:
            raise ValueError(f"expected two (B, 3, S, S) tensors with S a multiple of 32, got "
                             f"{tuple(image.shape)} and {tuple(flow.shape)}")
        levels = net.encode(image, flow)
        if trace is not None:
            trace.update({f"encoder_level{i}": level for i, level in enumerate(levels)})
        if self.frames_seen > 0:
            pixel = net.Mem0.read(self.pixel_bank, levels[PIXEL_LEVEL])
            semantic = net.Mem1.read(self.semantic_bank, levels[SEMANTIC_LEVEL])
            levels[PIXEL_LEVEL] = net.semantic_to_pixel(pixel, semantic)
            levels[SEMANTIC_LEVEL] = net.pixel_to_semantic(pixel, semantic)
            if trace is not None:
                trace.update(mem0_readout=pixel, mem1_readout=semantic, sgim=levels[PIXEL_LEVEL],
                             plam=levels[SEMANTIC_LEVEL])
        logits, raw = net.decode(levels)
        if trace is not None:
            trace["decoder_raw"] = raw
        net.Mem0.write(self.pixel_bank, levels[PIXEL_LEVEL], raw)
        net.Mem1.write(self.semantic_bank, levels[SEMANTIC_LEVEL], raw)
        self.frames_seen += 1
        return logits
