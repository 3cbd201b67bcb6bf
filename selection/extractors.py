"""Feature extractors: a batch of RGB images in, one float32 row per image out.

Every extractor has a `name` (what the user asks for) and a `version` (everything that
changes its output: weights, input size, pooling, code), so features can be cached by
image content and extractor version.

The shipped extractors run a convolutional encoder that returns one feature map per stage.
Each map is average-pooled (globally, or over a g x g grid) and the pooled stages are
concatenated: for EfficientNet-Lite0 with global pooling that is 16+24+40+112+320 = 512
numbers per image. A trained segmentation model's encoder plugs in the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from selection import pretrained

# Bump when the preprocessing or pooling code changes what an extractor returns.
POOLING_CODE_VERSION = 1
DEFAULT_SIZE = 448


@runtime_checkable
class FeatureExtractor(Protocol):
    """What the selection pipeline needs from a feature extractor."""

    name: str
    version: str

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """H x W x 3 uint8 images (any sizes) -> (len(images), dim) float32."""
        ...


class EncoderExtractor:
    """Pooled, concatenated stage outputs of an encoder that returns a list of feature maps.

    `stages` selects which outputs to keep (default: all); images are resized to
    `size` x `size`, scaled to [0, 1] and normalised with `mean`/`std`.
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        name: str,
        weights_id: str,
        mean: Sequence[float],
        std: Sequence[float],
        size: int = DEFAULT_SIZE,
        grid: int = 1,
        stages: Sequence[int] | None = None,
    ) -> None:
        if size < 32:
            raise ValueError(f"input size must be at least 32 pixels, got {size}")
        if grid < 1:
            raise ValueError(f"pooling grid must be at least 1, got {grid}")
        self.encoder = encoder.eval().to(memory_format=torch.channels_last)
        self.name = name
        self.size = size
        self.grid = grid
        self.stages = None if stages is None else tuple(stages)
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        picked = "all" if self.stages is None else "-".join(map(str, self.stages))
        self.version = (
            f"{name}|{weights_id}|size={size}|grid={grid}|stages={picked}"
            f"|pool=v{POOLING_CODE_VERSION}"
        )

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Resize each image to size x size (bilinear, antialiased) and normalise."""
        batch = []
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"expected H x W x 3 uint8, got {image.shape} {image.dtype}")
            x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
            x = F.interpolate(  # scaled after resizing: one image-sized float copy, not two
                x,
                size=(self.size, self.size),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
            batch.append(x / 255.0)
        x = torch.cat(batch)
        return ((x - self._mean) / self._std).contiguous(memory_format=torch.channels_last)

    def pool(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """Average-pool each kept stage to grid x grid and concatenate per image."""
        kept = maps if self.stages is None else [maps[i] for i in self.stages]
        return torch.cat([F.adaptive_avg_pool2d(m, self.grid).flatten(1) for m in kept], dim=1)

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if len(images) == 0:
            raise ValueError("no images to embed")
        with torch.inference_mode():
            maps = self.encoder(self.preprocess(images))
            return self.pool(list(maps)).float().numpy()


def imagenet_extractor(size: int = DEFAULT_SIZE, grid: int = 1) -> EncoderExtractor:
    """EfficientNet-Lite0 with the packaged ImageNet weights, all five stages pooled."""
    return EncoderExtractor(
        pretrained.lite0_features(),
        name="imagenet",
        weights_id=pretrained.lite0_weights_id(),
        mean=pretrained.LITE0_MEAN,
        std=pretrained.LITE0_STD,
        size=size,
        grid=grid,
    )
