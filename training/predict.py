"""Crack probability maps for whole images, at their original size and resolution.

Images larger than one tile are predicted tile by tile (overlapping tiles, blended with
weights that fall off towards each tile's border), so thin cracks of a 12-20 MP photo are
seen at full resolution: the network's memory is bounded by the tile; the one image-sized
array is the blended map (float32, 4 bytes per pixel); its weights are a row and a column
vector.

Given an onnxruntime runner of the same model (`training.onnx_model`), every forward pass
runs on it instead of torch (several times faster on CPU); padding, normalisation, tiling
and blending stay the same code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from training.model import normalize

if TYPE_CHECKING:
    from training.onnx_model import OnnxRunner

STRIDE = 32  # UNet++ needs sides divisible by the encoder's output stride
TILE = 512  # tile side (pixels): fastest per pixel on a 2-core CPU (benchmarks/full_resolution.py)
OVERLAP = 64  # pixels shared by neighbouring tiles


def predict_probs(
    model: nn.Module,
    image: np.ndarray,
    encoder: str,
    max_side: int | None = None,
    tile: int = TILE,
    overlap: int = OVERLAP,
    runner: OnnxRunner | None = None,
) -> np.ndarray:
    """H x W float32 crack probabilities for an H x W x 3 uint8 image.

    Full resolution by default. `max_side` downscales larger images first (a quick
    look, e.g. for uncertainty over a pool) and upscales the probabilities back.
    `runner`: the model exported to ONNX; the forward passes run on it (else on torch).
    """
    h, w = image.shape[:2]
    if max_side is not None and max(h, w) > max_side:
        scale = max_side / max(h, w)
        x = _to_tensor(image, model)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        small = _forward(model, x, encoder, runner)
        up = F.interpolate(small[None, None], size=(h, w), mode="bilinear", align_corners=False)
        return torch.sigmoid(up)[0, 0].numpy()
    if max(h, w) <= tile:
        return torch.sigmoid(_forward(model, _to_tensor(image, model), encoder, runner)).numpy()
    probs_sum = np.zeros((h, w), dtype=np.float32)
    # A tile's weight is ramp(rows) x ramp(columns) and the tiles form a grid, so the summed
    # weights are (rows' sum) x (columns' sum): two vectors, not a third image-sized map.
    row_sum = np.zeros(h, dtype=np.float32)
    col_sum = np.zeros(w, dtype=np.float32)
    origins = _tile_origins(h, w, tile, overlap)
    for y, x in origins:
        crop = image[y : y + tile, x : x + tile]
        probs = torch.sigmoid(_forward(model, _to_tensor(crop, model), encoder, runner)).numpy()
        ramp_y, ramp_x = _ramp(probs.shape[0], overlap), _ramp(probs.shape[1], overlap)
        probs *= ramp_y[:, None]
        probs *= ramp_x[None, :]
        probs_sum[y : y + crop.shape[0], x : x + crop.shape[1]] += probs
    for y in sorted({y for y, _ in origins}):
        row_sum[y : y + min(tile, h - y)] += _ramp(min(tile, h - y), overlap)
    for x in sorted({x for _, x in origins}):
        col_sum[x : x + min(tile, w - x)] += _ramp(min(tile, w - x), overlap)
    probs_sum /= row_sum[:, None]  # in place: no other image-sized map
    probs_sum /= col_sum[None, :]
    return probs_sum


def _to_tensor(image: np.ndarray, model: nn.Module) -> torch.Tensor:
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(device)
    return x.float() / 255.0


def _forward(
    model: nn.Module, x: torch.Tensor, encoder: str, runner: OnnxRunner | None = None
) -> torch.Tensor:
    """Logits (H x W, float32, CPU) of one N=1 image tensor; sides padded to the stride.
    The one place that chooses the engine: onnxruntime when a runner is given, else torch."""
    sh, sw = x.shape[-2:]
    ph, pw = (-sh) % STRIDE, (-sw) % STRIDE
    if ph or pw:
        mode = "reflect" if min(sh, sw) > max(ph, pw) else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    if runner is not None:
        with torch.inference_mode():
            x = normalize(x, encoder).float().cpu().numpy()
        return torch.from_numpy(runner(x))[0, 0, :sh, :sw]
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        logits = model(normalize(x, encoder))[0, 0, :sh, :sw].float().cpu()
    model.train(was_training)
    return logits


def _tile_origins(h: int, w: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    step = max(1, tile - overlap)

    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        out = list(range(0, n - tile, step))
        return [*out, n - tile]

    return [(y, x) for y in starts(h) for x in starts(w)]


def _ramp(n: int, overlap: int) -> np.ndarray:
    """A tile's weights along one side: 1 inside, ramping linearly down towards the borders
    over `overlap` pixels (never 0, so image borders, covered by one tile only, keep their
    prediction). A tile's weight map is the outer product of its two sides' ramps."""
    r = np.minimum(np.arange(n) + 1, np.arange(n)[::-1] + 1).astype(np.float32)
    return np.clip(r / max(overlap, 1), 1e-3, 1.0)
