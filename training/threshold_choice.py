"""Should a project's few labels move a version's mask threshold? Their pooled ODS threshold
is kept only if it also wins leave-one-out: each labelled image scored at the threshold
fitted on the others must, pooled, beat the version's own threshold on the same images.
(Seen on GAPs384: three labels' threshold took the pre-annotations' F from 0.20 to 0.04.)"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.metrics import COUNT_FIELDS, THRESHOLDS, Counts, prf


@dataclass(frozen=True)
class ThresholdChoice:
    """`threshold`: the refit to use, or None (keep the version's own); the figures behind it."""

    threshold: float | None
    refit: float  # the labelled images' pooled ODS threshold
    refit_f: float  # pooled F at `refit` (fitted and scored on the same images: optimistic)
    leave_one_out_f: float  # pooled F, each image at the threshold fitted on the others
    version_f: float  # pooled F at the version's own threshold


def _totals(counts: Counts) -> np.ndarray:
    return np.stack([getattr(counts, k) for k in COUNT_FIELDS])  # 4 x images x thresholds


def _f(rows: np.ndarray) -> np.ndarray:
    return prf(*rows)[2]


def choose_threshold(counts: Counts, version_threshold: float) -> ThresholdChoice:
    """Per-image counts of the labelled images under the serving version -> the choice."""
    per_image = _totals(counts)
    pooled = per_image.sum(1)  # 4 x thresholds
    f_pooled = _f(pooled)
    best = int(np.argmax(f_pooled))
    held_out = np.zeros(4)
    for i in range(per_image.shape[1]):
        others = pooled - per_image[:, i]
        held_out += per_image[:, i, int(np.argmax(_f(others)))]
    fixed = int(np.clip(np.round(version_threshold * 100), 0, len(THRESHOLDS) - 1))
    loo_f, version_f = float(_f(held_out)), float(f_pooled[fixed])
    refit = float(THRESHOLDS[best])
    adopted = per_image.shape[1] >= 2 and refit > 0.0 and loo_f > version_f
    chosen = refit if adopted else None
    return ThresholdChoice(chosen, refit, float(f_pooled[best]), loo_f, version_f)
