"""Should a project's few labels move a version's mask threshold? Their pooled ODS threshold
is kept only if it also wins leave-one-out: each labelled image scored at the threshold
fitted on the others must, pooled, beat the version's own threshold on the same images.
(Seen on GAPs384: three labels' threshold took the pre-annotations' F from 0.20 to 0.04.)"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.metrics import COUNT_FIELDS, THRESHOLDS, Counts, prf, threshold_index


@dataclass(frozen=True)
class ThresholdChoice:
    """`threshold`: the refit to use, or None (keep the version's own); the figures behind it."""

    threshold: float | None
    reason: str  # why, in words
    refit: float  # the labelled images' pooled ODS threshold
    refit_f: float  # pooled F at `refit` (fitted and scored on the same images: optimistic)
    leave_one_out_f: float  # pooled F, each image at the threshold fitted on the others
    version_f: float  # pooled F at the version's own threshold


def _totals(counts: Counts) -> np.ndarray:
    return np.stack([getattr(counts, k) for k in COUNT_FIELDS])  # 4 x images x thresholds


def _f(rows: np.ndarray) -> np.ndarray:
    return prf(*rows)[2]


def choose_threshold(counts: Counts, version_threshold: float) -> ThresholdChoice:
    """Per-image counts of the labelled images under the serving version -> the choice.

    Leave-one-out replays the rule that ships: a threshold of 0 (every pixel) is never
    served, the version's own serves instead."""
    per_image = _totals(counts)
    pooled = per_image.sum(1)  # 4 x thresholds
    f_pooled = _f(pooled)
    best = int(np.argmax(f_pooled))
    fixed = threshold_index(version_threshold)
    held_out = np.zeros(4)
    for i in range(per_image.shape[1]):
        fitted = int(np.argmax(_f(pooled - per_image[:, i])))
        held_out += per_image[:, i, fitted if THRESHOLDS[fitted] > 0 else fixed]
    loo_f, version_f = float(_f(held_out)), float(f_pooled[fixed])
    refit = float(THRESHOLDS[best])
    if per_image.shape[1] < 2:
        adopted, reason = False, "one label: nothing to test a refit on"
    elif refit <= 0.0:
        adopted, reason = False, "the labels' best threshold is 0 (every pixel)"
    elif loo_f > version_f:
        adopted = True
        reason = f"labels' {refit:.2f}: F {loo_f:.3f} leave-one-out > {version_f:.3f} at its own"
    else:
        adopted = False
        reason = f"labels' {refit:.2f}: F {loo_f:.3f} leave-one-out <= {version_f:.3f} at its own"
    return ThresholdChoice(
        refit if adopted else None, reason, refit, float(f_pooled[best]), loo_f, version_f
    )
