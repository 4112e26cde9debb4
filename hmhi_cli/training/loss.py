"""The paper's loss: 20 x (sigmoid focal (alpha 0.25, gamma 2) + 0.5 x BCE) + dice, per frame,
summed over the clip and averaged over the batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss


@dataclass(frozen=True)
class LossWeights:
    focal: float = 20.0
    bce: float = 0.5
    dice: float = 1.0
    alpha: float = 0.25
    gamma: float = 2.0


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per sample; ``logits``/``target`` (N, 1, H, W) -> (N,)."""
    probability = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1)
    overlap = (probability * target).sum(1)
    return 1.0 - (2.0 * overlap + smooth) / (probability.sum(1) + target.sum(1) + smooth)


def clip_loss(logits: torch.Tensor, masks: torch.Tensor, weights: LossWeights = LossWeights()) -> torch.Tensor:
    """(B, T, 1, S, S) logits and 0/1 masks -> scalar loss."""
    batch, frames = logits.shape[:2]
    flat_logits = logits.flatten(0, 1)
    flat_masks = masks.flatten(0, 1)
    focal = sigmoid_focal_loss(flat_logits, flat_masks, alpha=weights.alpha, gamma=weights.gamma, reduction="none")
    bce = F.binary_cross_entropy_with_logits(flat_logits, flat_masks, reduction="none")
    per_frame = (weights.focal * (focal + weights.bce * bce).flatten(1).mean(1)
                 + weights.dice * dice_loss(flat_logits, flat_masks))
    return per_frame.view(batch, frames).sum(1).mean()
