"""A registry version's encoder as a feature extractor: the paper's UNet++ features.

The UNet++ skip connections are the encoder's five stage outputs (strides 2 to 32); they
are pooled and concatenated exactly as the `imagenet` extractor pools its stages, so the
two are interchangeable in `selection`. The extractor version carries the hash of the
encoder's weights: versions that share an encoder (one adapted with its encoder frozen and
its parent) share cached features; no other two do.
"""

from __future__ import annotations

from selection.extractors import DEFAULT_SIZE, EncoderExtractor
from training.model import encoder_info, encoder_sha256
from training.registry import LoadedModel, Registry

# smp encoders return [input, stage1, ..., stage5]: the input itself is not a feature.
SKIP_STAGES = (1, 2, 3, 4, 5)
ENCODER_WEIGHTS = "crackal-encoder-sha256:"  # in the extractor version, before the hash


def extractor_from_model(
    loaded: LoadedModel, size: int = DEFAULT_SIZE, grid: int = 1
) -> EncoderExtractor:
    """Features of an already loaded registry version."""
    info = encoder_info(loaded.encoder)
    return EncoderExtractor(
        loaded.model.encoder,
        name=f"model:{loaded.version}",
        weights_id=(
            f"{ENCODER_WEIGHTS}{encoder_sha256(loaded.model.state_dict())[:20]}"
            f"|encoder={loaded.encoder}"
        ),
        cache_name="model",
        mean=info.mean,
        std=info.std,
        size=size,
        grid=grid,
        stages=SKIP_STAGES,
    )


def model_extractor(
    registry: Registry, version: str = "current", size: int = DEFAULT_SIZE, grid: int = 1
) -> EncoderExtractor:
    """Features of registry version `version` ('current', 'latest' or a name like v3)."""
    return extractor_from_model(registry.load(version), size, grid)
