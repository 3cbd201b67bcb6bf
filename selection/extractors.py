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
# 2: images are resized as uint8 (one image-sized copy less), then scaled to [0, 1].
POOLING_CODE_VERSION = 2
DEFAULT_SIZE = 448


@runtime_checkable
class FeatureExtractor(Protocol):
    """What the selection pipeline needs from a feature extractor."""

    name: str
    version: str

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """H x W x 3 uint8 images (any sizes) -> (len(images), dim) float32."""
        ...

    def shrink(self, image: np.ndarray) -> np.ndarray:
        """The image reduced as the extractor's first step does it; embedding the result
        gives the same row, so a caller can drop a large image before its batch runs."""
        ...


class EncoderExtractor:
    """Pooled, concatenated stage outputs of an encoder that returns a list of feature maps.

    `stages` selects which outputs to keep (default: all); images are resized to
    `size` x `size` (on the CPU), scaled to [0, 1] and normalised with `mean`/`std` on the
    device the encoder's weights are on (a GPU when the encoder was moved there). The
    `version` (what cached rows are keyed by) starts with `cache_name`, by default `name`.
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
        forward_batch: int | None = None,
        cache_name: str | None = None,
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
        self.device = next(encoder.parameters()).device
        # images per forward pass: on a 2-core CPU one at a time is the fastest (12 images/s
        # at 448 px against 6 at 16) and holds one image's activations, not 16 (~0.9 GB);
        # a GPU wants whole batches (None: 1 on the CPU, 16 on a GPU)
        if forward_batch is None:
            forward_batch = 1 if self.device.type == "cpu" else 16
        self.forward_batch = max(1, forward_batch)
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        picked = "all" if self.stages is None else "-".join(map(str, self.stages))
        # a GPU's rows differ from the CPU's in the last digits (TF32 convolutions): their
        # cache entries are kept apart; the CPU's version is unchanged
        on = "" if self.device.type == "cpu" else f"|device={self.device.type}"
        self.version = (
            f"{cache_name or name}|{weights_id}|size={size}|grid={grid}|stages={picked}"
            f"|pool=v{POOLING_CODE_VERSION}{on}"
        )

    def shrink(self, image: np.ndarray) -> np.ndarray:
        """`size` x `size` x 3 uint8: resized (bilinear, antialiased) in uint8, so a large
        image costs no float copy. An image already at that size is returned as is."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected H x W x 3 uint8, got {image.shape} {image.dtype}")
        if image.shape[:2] == (self.size, self.size):
            return image
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        x = F.interpolate(
            x.contiguous(memory_format=torch.channels_last),
            size=(self.size, self.size),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        return x[0].permute(1, 2, 0).contiguous().numpy()

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Shrink each image, scale to [0, 1] and normalise: an N x 3 x size x size batch
        on the encoder's device."""
        batch = [torch.from_numpy(self.shrink(image)).permute(2, 0, 1) for image in images]
        x = torch.stack(batch).to(self.device).float() / 255.0
        return ((x - self._mean) / self._std).contiguous(memory_format=torch.channels_last)

    def pool(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """Average-pool each kept stage to grid x grid and concatenate per image."""
        kept = maps if self.stages is None else [maps[i] for i in self.stages]
        return torch.cat([F.adaptive_avg_pool2d(m, self.grid).flatten(1) for m in kept], dim=1)

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if len(images) == 0:
            raise ValueError("no images to embed")
        rows = []
        with torch.inference_mode():
            for start in range(0, len(images), self.forward_batch):
                chunk = images[start : start + self.forward_batch]
                maps = self.encoder(self.preprocess(chunk))
                rows.append(self.pool(list(maps)).float().cpu().numpy())
        return np.concatenate(rows)


def imagenet_extractor(
    size: int = DEFAULT_SIZE, grid: int = 1, device: torch.device | str = "cpu"
) -> EncoderExtractor:
    """EfficientNet-Lite0 with the packaged ImageNet weights, all five stages pooled, on
    `device` (callers pass `training.device.resolve_device()`)."""
    return EncoderExtractor(
        pretrained.lite0_features().to(device),
        name="imagenet",
        weights_id=pretrained.lite0_weights_id(),
        mean=pretrained.LITE0_MEAN,
        std=pretrained.LITE0_STD,
        size=size,
        grid=grid,
    )
