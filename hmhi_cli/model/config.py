"""Model configurations: everything that fixes a network's shape.

A weights file records its configuration name plus the input size and memory limit, so the
CLI can rebuild the network the weights were trained with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelConfig:
    """Shape of an HMHI-Net: encoder widths, decoder width and memory sizes."""

    encoder: str
    widths: tuple[int, int, int, int]
    heads: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    reduction_ratios: tuple[int, int, int, int]
    decoder_dim: int
    memory_ffn_dim: int
    mask_hidden: tuple[int, int]
    mlp_ratio: int = 4
    top_k: int = 50

    def to_dict(self) -> dict:
        return asdict(self)


CONFIGS: dict[str, ModelConfig] = {
    "mit_b1": ModelConfig(
        encoder="mit_b1",
        widths=(64, 128, 320, 512),
        heads=(1, 2, 5, 8),
        depths=(2, 2, 2, 2),
        reduction_ratios=(8, 4, 2, 1),
        decoder_dim=256,
        memory_ffn_dim=2048,
        mask_hidden=(27, 256),
    ),
    "mit_b0": ModelConfig(
        encoder="mit_b0",
        widths=(32, 64, 160, 256),
        heads=(1, 2, 5, 8),
        depths=(2, 2, 2, 2),
        reduction_ratios=(8, 4, 2, 1),
        decoder_dim=128,
        memory_ffn_dim=1024,
        mask_hidden=(27, 128),
    ),
}


def get_config(encoder: str) -> ModelConfig:
    """Return the configuration for ``encoder`` ("mit_b0" or "mit_b1")."""
    try:
        return CONFIGS[encoder]
    except KeyError:
        raise ValueError(f"unknown encoder {encoder!r}; choose one of {', '.join(CONFIGS)}") from None
