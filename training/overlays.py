"""Pictures of predictions: image, ground truth and thresholded prediction side by side."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from selection.plots import save_figure
from training.data import Loaded
from training.metrics import image_counts, scores, threshold_index
from training.predict import predict_probs
from training.registry import LoadedModel


def overlay(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    out = image.copy()
    out[mask] = (0.4 * out[mask] + 0.6 * np.array(color)).astype(np.uint8)
    return out


def worst_overlays(
    loaded: LoadedModel, items: Sequence[Loaded], threshold: float, path: Path
) -> None:
    """One row per image: photo, ground truth (green), prediction above `threshold` (red)."""
    if not items:
        return
    fig, axes = plt.subplots(len(items), 3, figsize=(10, 2.6 * len(items)), squeeze=False)
    for row, item in zip(axes, items, strict=True):
        probs = predict_probs(loaded.model, item.image, loaded.encoder)
        f = scores(image_counts(probs, item.mask)).f[threshold_index(threshold)]
        row[0].imshow(item.image)
        row[0].set_title(item.sample.image.name, fontsize=8)
        row[1].imshow(overlay(item.image, item.mask, (0, 255, 0)))
        row[1].set_title("ground truth", fontsize=8)
        row[2].imshow(overlay(item.image, probs > threshold, (255, 0, 0)))
        row[2].set_title(f"{loaded.version} > {threshold:.2f}: F = {f:.3f}", fontsize=8)
        for ax in row:
            ax.axis("off")
    save_figure(fig, path, dpi=100)
