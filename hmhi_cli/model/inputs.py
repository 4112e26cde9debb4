"""What the network sees: frames and flow images resized to S x S and ImageNet-normalised,
and how its logits become probability maps at the source resolution."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def to_model_input(rgb: np.ndarray, size: int) -> torch.Tensor:
    """HxWx3 uint8 RGB -> (3, size, size) float32, resized (bilinear, no aspect kept) and normalised."""
    if rgb.shape[:2] != (size, size):
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)
    normalised = (rgb.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))


def logits_to_probability(logits: torch.Tensor, height: int, width: int) -> np.ndarray:
    """(1, 1, S, S) logits -> HxW float32 foreground probability at the source size (bilinear)."""
    resized = F.interpolate(logits.float(), size=(height, width), mode="bilinear", align_corners=False)
    return torch.sigmoid(resized)[0, 0].cpu().numpy()
