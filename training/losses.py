"""Training losses for thin structures: binary cross-entropy plus soft Dice, and optionally
a skeleton recall term (Kirchhoff et al., ECCV 2024) that weighs every crack by its length,
not its area, so a 1-px crack counts as much per metre as a wide one."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from skimage.morphology import dilation, skeletonize


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """BCE (with logits) + (1 - soft Dice over the whole batch); computed in float32."""
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    probs = torch.sigmoid(logits)
    inter = (probs * target).sum()
    dice = (2 * inter + smooth) / (probs.sum() + target.sum() + smooth)
    return bce + (1 - dice)


def tubed_skeletons(masks: torch.Tensor) -> torch.Tensor:
    """N x 1 x H x W binary masks -> their skeletons dilated twice (a tube about 2 px to each
    side, the paper's 2-D setting), kept inside the mask; float32, same shape."""
    out = np.zeros(masks.shape, dtype=np.float32)
    for i, mask in enumerate(masks[:, 0].cpu().numpy() > 0.5):
        if mask.any():
            out[i, 0] = dilation(dilation(skeletonize(mask))) & mask
    return torch.from_numpy(out)


def skeleton_recall_loss(logits: torch.Tensor, skeletons: torch.Tensor) -> torch.Tensor:
    """1 - soft recall of the tubed skeletons over the whole batch (0 when the batch has
    no crack pixel); computed in float32."""
    total = skeletons.sum()
    if total == 0:
        return logits.float().sum() * 0.0
    probs = torch.sigmoid(logits.float())
    return 1 - (probs * skeletons).sum() / total
