"""Should a project's few labels move a version's mask threshold, and how far?

The labels' pooled ODS threshold is not served as it is: the version's own threshold (fitted
on its validation images) counts as `PRIOR_LABELS` labelled images, and the served threshold
is the weighted mean of the two in log-odds. Three labels move it 3/10 of the way, thirty
labels 30/37. The move is kept only if it also wins leave-one-out: each labelled image
scored at the threshold this rule gives from the others must, pooled, beat the version's
own threshold on the same images.

Why both (`benchmarks/threshold_refit.py`, `results/threshold/`): the queue serves the
photos farthest from what the model knows first, so the first labels are the least typical
of the project. On GAPs384 the 3 farthest photos agree on 0.98, leave-one-out passes, and
served as it was the refit took the pre-annotations' F on the rest from 0.20 to 0.04."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.metrics import COUNT_FIELDS, THRESHOLDS, Counts, prf, threshold_index

PRIOR_LABELS = 7  # labelled images the version's own threshold counts as
MIN_LABELS = 3  # fewer labelled images do not refit the threshold
_EDGE = 0.01  # log-odds are taken within [0.01, 0.99], the grid's usable range


def refit_refused(labels: int, shows_crack: bool) -> str | None:
    """Why labels like these cannot refit a threshold (too few, or no crack pixel in any),
    or None when they can."""
    if labels < MIN_LABELS:
        return f"{labels} label(s), fewer than {MIN_LABELS}"
    if not shows_crack:
        return "no label shows a crack"
    return None


@dataclass(frozen=True)
class ThresholdChoice:
    """`threshold`: the threshold to serve, or None (keep the version's own); the figures
    behind it."""

    threshold: float | None
    reason: str  # why, in words
    refit: float  # the labelled images' pooled ODS threshold
    moved: float  # the threshold this rule gives from all the labels (`threshold` when adopted)
    refit_f: float  # pooled F at `refit` (fitted and scored on the same images: optimistic)
    leave_one_out_f: float  # pooled F, each image at the threshold moved by the others
    version_f: float  # pooled F at the version's own threshold


def moved_threshold(refit: float, own: float, labels: int, prior: float = PRIOR_LABELS) -> float:
    """The grid threshold `labels / (labels + prior)` of the way from `own` to `refit` in
    log-odds. A refit of 0 (mark every pixel) is never served: `own` comes back."""
    if refit <= 0.0 or labels <= 0:
        return float(THRESHOLDS[threshold_index(own)])
    a, b = (np.log(x / (1 - x)) for x in np.clip([refit, own], _EDGE, 1 - _EDGE))
    mean = (labels * a + prior * b) / (labels + prior)
    return float(THRESHOLDS[threshold_index(1 / (1 + np.exp(-mean)))])


def _totals(counts: Counts) -> np.ndarray:
    return np.stack([getattr(counts, k) for k in COUNT_FIELDS])  # 4 x images x thresholds


def _f(rows: np.ndarray) -> np.ndarray:
    return prf(*rows)[2]


def choose_threshold(
    counts: Counts, version_threshold: float, prior: float = PRIOR_LABELS
) -> ThresholdChoice:
    """Per-image counts of the labelled images under the serving version -> the choice.

    Leave-one-out replays the rule that ships, the move included: where the others show
    no crack pixel, the version's own serves (as `backend.retrain` does). The folds fit on
    n - 1 labels even where that is below the backend's minimum of 3: they estimate what
    the rule does with labels like these, not whether the gate would open."""
    per_image = _totals(counts)
    n = per_image.shape[1]
    if n == 0:
        raise ValueError("no labelled images to choose a threshold on")
    pooled = per_image.sum(1)  # 4 x thresholds
    f_pooled = _f(pooled)
    refit = float(THRESHOLDS[int(np.argmax(f_pooled))])
    fixed = threshold_index(version_threshold)
    crack = per_image[2:, :, 0].sum(0)  # found + fn at any threshold: the crack pixels
    held_out = np.zeros(4)
    for i in range(n):
        at = fixed
        if crack.sum() > crack[i]:
            fitted = float(THRESHOLDS[int(np.argmax(_f(pooled - per_image[:, i])))])
            at = threshold_index(moved_threshold(fitted, version_threshold, n - 1, prior))
        held_out += per_image[:, i, at]
    loo_f, version_f = float(_f(held_out)), float(f_pooled[fixed])
    moved = moved_threshold(refit, version_threshold, n, prior)
    share = f"{n}/{n + prior:g} of the way from {THRESHOLDS[fixed]:.2f} to the labels' {refit:.2f}"
    if n < 2:
        adopted, reason = False, "one label: nothing to test a refit on"
    elif refit <= 0.0:
        adopted, reason = False, "the labels' best threshold is 0 (every pixel)"
    elif threshold_index(moved) == fixed:
        adopted, reason = False, f"{share} is its own"
    elif loo_f > version_f:
        adopted = True
        reason = f"{share}: F {loo_f:.3f} leave-one-out > {version_f:.3f} at its own"
    else:
        adopted = False
        reason = f"{share} ({moved:.2f}): F {loo_f:.3f} leave-one-out <= {version_f:.3f} at its own"
    return ThresholdChoice(
        moved if adopted else None,
        reason,
        refit,
        moved,
        float(f_pooled[threshold_index(refit)]),
        loo_f,
        version_f,
    )
