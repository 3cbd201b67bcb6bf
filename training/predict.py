"""Crack probability maps for whole images, at their original size."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from training.model import normalize

STRIDE = 32  # UNet++ needs sides divisible by the encoder's output stride
DEFAULT_MAX_SIDE = 1024


def predict_probs(
    model: nn.Module, image: np.ndarray, encoder: str, max_side: int = DEFAULT_MAX_SIDE
) -> np.ndarray:
    """H x W float32 crack probabilities for an H x W x 3 uint8 image.

    Images whose longer side exceeds `max_side` are downscaled for the forward pass and
    the probabilities upscaled back. Sides are reflect-padded to a multiple of 32.
    """
    h, w = image.shape[:2]
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(device)
    x = x.float() / 255.0
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    sh, sw = x.shape[-2:]
    ph, pw = (-sh) % STRIDE, (-sw) % STRIDE
    if ph or pw:
        mode = "reflect" if min(sh, sw) > max(ph, pw) else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        logits = model(normalize(x, encoder))[..., :sh, :sw]
        if scale < 1.0:
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        probs = torch.sigmoid(logits)[0, 0].float().cpu().numpy()
    model.train(was_training)
    return probs
