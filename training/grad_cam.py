"""A Grad-CAM map of the crack logit: where the encoder's deepest features push the model
towards "crack" (Selvaraju et al. 2017, adapted to segmentation as the damage-embedding
paper explains its clusters).

The target is the summed crack logit over the pixels whose probability is above 0.5
(over all pixels when there are none); each channel of the encoder's last feature map is weighted by
its mean gradient, the weighted sum is rectified, upsampled to the image and scaled to
[0, 1]. A coarse map by nature (1/32 of the input), so the image is first reduced to at
most `max_side` pixels.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from training.model import normalize
from training.predict import STRIDE

MAX_SIDE = 512


def crack_cam(
    model: nn.Module, image: np.ndarray, encoder: str, max_side: int = MAX_SIDE
) -> np.ndarray:
    """H x W float32 in [0, 1] (the image's size) for an H x W x 3 uint8 image."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected H x W x 3 uint8, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    device = next(model.parameters()).device
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255.0
    scale = min(1.0, max_side / max(h, w))
    size = (max(STRIDE, round(h * scale)), max(STRIDE, round(w * scale)))
    x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    x = F.pad(x, (0, (-size[1]) % STRIDE, 0, (-size[0]) % STRIDE), mode="replicate")
    kept: dict[str, torch.Tensor] = {}

    def keep_deepest(_module: nn.Module, _inputs: object, outputs: list[torch.Tensor]) -> None:
        kept["maps"] = outputs[-1]
        outputs[-1].retain_grad()

    # a private copy: the served model may run in other threads meanwhile (no hook there)
    model = copy.deepcopy(model).eval()
    for parameter in model.parameters():  # gradients of the activations only
        parameter.requires_grad_(False)
    x.requires_grad_(True)
    model.encoder.register_forward_hook(keep_deepest)
    with torch.enable_grad():
        logits = model(normalize(x.to(device), encoder))[0, 0, : size[0], : size[1]]
        crack = logits > 0
        target = logits[crack].sum() if bool(crack.any()) else logits.sum()
        target.backward()
    maps, grads = kept["maps"].detach(), kept["maps"].grad
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * maps).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    cam = cam[:, :, : size[0], : size[1]]
    cam = F.interpolate(cam, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    peak = float(cam.max())
    cam = cam / peak if peak > 0 else cam
    return cam.cpu().numpy().astype(np.float32)
