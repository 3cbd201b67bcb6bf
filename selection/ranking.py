"""Turning I_dist into a labelling proposal (method.md, sections 4.2-4.3).

- min-max scaling of I_dist within one secondary set,
- the candidate band (scaled distance in [0.6, 1] by default) and the top-k farthest,
- the sorted halves / thirds with mean and spread of I_dist (tables 3-5 layout),
- the moving average used to smooth per-image F-scores along the distance axis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DEFAULT_BAND = (0.6, 1.0)
# Spreads below this fraction of the largest distance are round-off (duplicated images
# differ by ~1e-13 after PCA), not distances: they scale to 0.
SCALE_TOLERANCE = 1e-9


def min_max_scale(values: np.ndarray) -> np.ndarray:
    """(x - min) / (max - min) in float64.

    When all values are equal (one image, or identical images) no image is farther than
    another: every scaled value is 0, so none enters the candidate band. "Equal" allows
    round-off: a spread within SCALE_TOLERANCE of the largest value counts as none.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return x.copy()
    if not np.isfinite(x).all():
        raise ValueError("distances contain NaN or infinity")
    lo, hi = x.min(), x.max()
    if hi - lo <= SCALE_TOLERANCE * max(abs(hi), 1.0):
        return np.zeros_like(x)
    return (x - lo) / (hi - lo)


def in_band(scaled: np.ndarray, band: tuple[float, float] = DEFAULT_BAND) -> np.ndarray:
    """Boolean mask of scaled distances inside the closed interval `band`."""
    lo, hi = band
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"band must satisfy 0 <= low <= high <= 1, got {band}")
    scaled = np.asarray(scaled, dtype=np.float64)
    return (scaled >= lo) & (scaled <= hi)


def farthest_first(i_dist: np.ndarray) -> np.ndarray:
    """Indices ordered from the largest I_dist to the smallest (ties keep input order)."""
    return np.argsort(-np.asarray(i_dist, dtype=np.float64), kind="stable")


def ranks(i_dist: np.ndarray) -> np.ndarray:
    """1-based rank of each image, 1 = farthest from P."""
    order = farthest_first(i_dist)
    out = np.empty(len(order), dtype=np.int64)
    out[order] = np.arange(1, len(order) + 1)
    return out


def top_k(i_dist: np.ndarray, k: int, band_mask: np.ndarray | None = None) -> np.ndarray:
    """Indices of the k farthest images (restricted to `band_mask` when given), farthest first."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    order = farthest_first(i_dist)
    if band_mask is not None:
        order = order[np.asarray(band_mask, dtype=bool)[order]]
    return order[:k]


@dataclass
class Part:
    """One slice of S sorted by I_dist ascending: its images and their distance statistics."""

    indices: np.ndarray
    mean: float
    std: float
    f_score: float | None = None


def sorted_parts(
    i_dist: np.ndarray,
    parts: int,
    f_score: Callable[[np.ndarray], float] | None = None,
) -> list[Part]:
    """Sort S by I_dist ascending and split it into `parts` near-equal slices.

    Each slice reports the mean and (population) standard deviation of its I_dist and,
    when `f_score` is given, `f_score(indices)` for its images (the F of tables 3-5).
    """
    i_dist = np.asarray(i_dist, dtype=np.float64)
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    if len(i_dist) < parts:
        raise ValueError(f"cannot split {len(i_dist)} images into {parts} parts")
    order = np.argsort(i_dist, kind="stable")
    out = []
    for idx in np.array_split(order, parts):
        values = i_dist[idx]
        out.append(
            Part(
                idx,
                float(values.mean()),
                float(values.std()),
                None if f_score is None else float(f_score(idx)),
            )
        )
    return out


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over `window` consecutive values ('valid' mode: len - window + 1 values).

    The window is clamped to [1, len(values)].
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return x.copy()
    w = int(min(max(window, 1), x.size))
    csum = np.cumsum(np.concatenate([[0.0], x]))
    return (csum[w:] - csum[:-w]) / w


def smoothing_window(n: int) -> int:
    """The paper's moving-average window for a set of n images: |S| / 10, at least 1."""
    return max(1, n // 10)
