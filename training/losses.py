"""Training loss for thin structures: binary cross-entropy plus soft Dice."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """BCE (with logits) + (1 - soft Dice over the whole batch); computed in float32."""
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    probs = torch.sigmoid(logits)
    inter = (probs * target).sum()
    dice = (2 * inter + smooth) / (probs.sum() + target.sum() + smooth)
    return bce + (1 - dice)
