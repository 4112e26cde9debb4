"""Model configurations: everything that fixes a network's shape.

A weights file records its configuration name plus the input size and memory limit, so the
CLI can rebuild the network the weights were trained with. ``family`` names the encoder
module (``hmhi_cli.model.encoders``); the MiT-only fields are ignored by other families.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class ModelConfig:
    """Shape of an HMHI-Net: encoder family and widths, decoder width and memory sizes."""

    encoder: str
    widths: tuple[int, int, int, int]
    decoder_dim: int
    memory_ffn_dim: int
    mask_hidden: tuple[int, int]
    family: str = "mit"
    heads: tuple[int, int, int, int] = (1, 2, 5, 8)
    depths: tuple[int, int, int, int] = (2, 2, 2, 2)
    reduction_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    mlp_ratio: int = 4
    top_k: int = 50

    def to_dict(self) -> dict:
        return asdict(self)


CONFIGS: dict[str, ModelConfig] = {
    "mit_b1": ModelConfig(
        encoder="mit_b1",
        widths=(64, 128, 320, 512),
        decoder_dim=256,
        memory_ffn_dim=2048,
        mask_hidden=(27, 256),
    ),
    "mit_b0": ModelConfig(
        encoder="mit_b0",
        widths=(32, 64, 160, 256),
        decoder_dim=128,
        memory_ffn_dim=1024,
        mask_hidden=(27, 128),
    ),
    "efficientnet_lite0": ModelConfig(
        encoder="efficientnet_lite0",
        family="efficientnet_lite",
        widths=(24, 40, 112, 320),
        decoder_dim=64,
        memory_ffn_dim=512,
        mask_hidden=(27, 64),
    ),
}
# Lite1 is deeper than lite0 but has the same level widths, so the rest of the network is the same.
CONFIGS["efficientnet_lite1"] = replace(CONFIGS["efficientnet_lite0"], encoder="efficientnet_lite1")


def get_config(encoder: str) -> ModelConfig:
    """Return the configuration for ``encoder`` (a key of :data:`CONFIGS`)."""
    try:
        return CONFIGS[encoder]
    except KeyError:
        raise ValueError(f"unknown encoder {encoder!r}; choose one of {', '.join(CONFIGS)}") from None
