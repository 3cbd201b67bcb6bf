"""A registry version's encoder as a feature extractor: the paper's UNet++ features.

The UNet++ skip connections are the encoder's five stage outputs (strides 2 to 32); they
are pooled and concatenated exactly as the `imagenet` extractor pools its stages, so the
two are interchangeable in `selection`. The extractor version carries the hash of the
encoder's weights: versions that share an encoder (one adapted with its encoder frozen and
its parent) share cached features; no other two do.
"""

from __future__ import annotations

import hashlib

from torch import nn

from selection.extractors import DEFAULT_SIZE, EncoderExtractor
from training.model import encoder_info
from training.registry import LoadedModel, Registry

# smp encoders return [input, stage1, ..., stage5]: the input itself is not a feature.
SKIP_STAGES = (1, 2, 3, 4, 5)


def extractor_from_model(
    loaded: LoadedModel, size: int = DEFAULT_SIZE, grid: int = 1
) -> EncoderExtractor:
    """Features of an already loaded registry version."""
    info = encoder_info(loaded.encoder)
    return EncoderExtractor(
        loaded.model.encoder,
        name=f"model:{loaded.version}",
        weights_id=f"crackal-encoder-sha256:{encoder_sha256(loaded.model.encoder)[:20]}",
        cache_name="model",
        mean=info.mean,
        std=info.std,
        size=size,
        grid=grid,
        stages=SKIP_STAGES,
    )


def encoder_sha256(encoder: nn.Module) -> str:
    """A hash of every tensor of the encoder's state (weights and BatchNorm statistics)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(encoder.state_dict().items()):
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}\n".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def model_extractor(
    registry: Registry, version: str = "current", size: int = DEFAULT_SIZE, grid: int = 1
) -> EncoderExtractor:
    """Features of registry version `version` ('current', 'latest' or a name like v3)."""
    return extractor_from_model(registry.load(version), size, grid)
