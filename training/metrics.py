"""Crack-pixel precision / recall / F over thresholds: ODS, OIS, AP (method.md, section 3.3).

Follows DeepSegmentor's `eval/prf_metrics.py`: thresholds 0.00, 0.01, ..., 0.99; a pixel is
predicted crack when its probability is strictly above the threshold; tp, fp and fn are
counted pixel-exactly in each image and summed over the images; P = tp / (tp + fp) (1 when
both are 0), R = tp / (tp + fn), F = 2PR / (P + R). ODS is the best F over thresholds of the
pooled counts. DeepSegmentor computes only that; OIS (the mean over images of each image's
best F) and AP (area under the pooled precision-recall curve) are ours.

Two choices where the reference divides by zero: R = 1 when an image (or a set) has no
crack pixel, and F = 0 when P + R = 0. So a crack-free image predicted empty scores F = 1,
and one with any false positive scores F = 0.

With `tolerance` r > 0 (DeepCrack's 2 px) a predicted pixel is a true positive when a ground
truth pixel lies within distance r, and a ground-truth pixel is found when a predicted pixel
lies within r; reported separately, never mixed with the exact counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

THRESHOLDS = np.round(np.arange(100) / 100.0, 2)


def threshold_index(threshold: float) -> int:
    """The position of `threshold` on the grid (nearest grid value, clipped to it)."""
    return int(np.clip(np.round(threshold * 100), 0, len(THRESHOLDS) - 1))


@dataclass
class Counts:
    """Per image and threshold, arrays of shape (images, 100), int64.

    `tp`/`fp`: predicted pixels that are / are not crack; `found`/`fn`: crack pixels that
    are / are not predicted. Without tolerance `found` equals `tp`.
    """

    tp: np.ndarray
    fp: np.ndarray
    found: np.ndarray
    fn: np.ndarray

    @staticmethod
    def stack(rows: Iterable[Counts]) -> Counts:
        rows = list(rows)
        if not rows:
            raise ValueError("no images to evaluate")
        return Counts(*(np.concatenate([getattr(r, k) for r in rows]) for k in COUNT_FIELDS))

    def subset(self, indices: np.ndarray) -> Counts:
        return Counts(*(getattr(self, k)[indices] for k in COUNT_FIELDS))


COUNT_FIELDS = ("tp", "fp", "found", "fn")


@dataclass
class Scores:
    """The metrics of one set of images."""

    ods: float  # F at the best single threshold over the pooled counts
    ods_threshold: float
    ois: float  # mean over images of the best per-image F
    ap: float  # area under the pooled precision-recall curve (step-wise)
    per_image_f: np.ndarray  # F of each image at the ODS threshold
    precision: np.ndarray  # pooled, per threshold
    recall: np.ndarray
    f: np.ndarray

    def as_dict(self) -> dict[str, float]:
        return {
            "ods": self.ods,
            "ods_threshold": self.ods_threshold,
            "ois": self.ois,
            "ap": self.ap,
            "images": len(self.per_image_f),
        }


def _above_counts(values: np.ndarray) -> np.ndarray:
    """For each threshold t_i = i/100, how many of `values` are strictly above t_i."""
    bins = np.ceil(np.asarray(values, dtype=np.float64) * 100.0).astype(np.int64) - 1
    bins = np.clip(bins, -1, 99)
    hist = np.bincount(bins + 1, minlength=101)[1:]  # drop the 'never above' bin
    return np.cumsum(hist[::-1])[::-1]


def image_counts(prob: np.ndarray, gt: np.ndarray, tolerance: float = 0.0) -> Counts:
    """Counts at every threshold for one probability map and its binary ground truth."""
    prob = np.asarray(prob, dtype=np.float32)
    gt = np.asarray(gt).astype(bool)
    if prob.shape != gt.shape:
        raise ValueError(f"prediction {prob.shape} and ground truth {gt.shape} differ in size")
    if tolerance <= 0:
        near_gt, best_near = gt, prob
    else:
        near_gt = ndimage.distance_transform_edt(~gt) <= tolerance if gt.any() else gt
        r = int(np.floor(tolerance))
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        disk = (yy**2 + xx**2) <= tolerance**2
        best_near = ndimage.maximum_filter(prob, footprint=disk, mode="constant", cval=0.0)
    tp = _above_counts(prob[near_gt])
    fp = _above_counts(prob[~near_gt])
    found = _above_counts(best_near[gt])
    fn = int(gt.sum()) - found
    return Counts(*(a[None].astype(np.int64) for a in (tp, fp, found, fn)))


def prf(tp, fp, found, fn):
    """Precision, recall and F from counts (arrays broadcast; 1 where nothing to find or mark)."""
    tp, fp, found, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, found, fn))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(tp + fp == 0, 1.0, tp / (tp + fp))
        r = np.where(found + fn == 0, 1.0, found / (found + fn))
        f = np.where(p + r == 0, 0.0, 2 * p * r / (p + r))
    return p, r, f


def scores(counts: Counts) -> Scores:
    """ODS, OIS, AP and per-image F from per-image counts."""
    p, r, f = prf(*(getattr(counts, k).sum(0) for k in COUNT_FIELDS))
    best = int(np.argmax(f))
    _, _, f_img = prf(*(getattr(counts, k) for k in COUNT_FIELDS))
    # Recall grows as the threshold falls: walk thresholds from high to low (sklearn's AP).
    ap = float(np.sum(np.diff(np.concatenate([[0.0], r[::-1]])) * p[::-1]))
    return Scores(
        ods=float(f[best]),
        ods_threshold=float(THRESHOLDS[best]),
        ois=float(f_img.max(1).mean()),
        ap=ap,
        per_image_f=f_img[:, best],
        precision=p,
        recall=r,
        f=f,
    )


def pooled_f(counts: Counts, threshold: float | None = None) -> float:
    """F of the counts summed over their images: at `threshold` (on the grid), or at the
    best threshold (ODS) for None."""
    f = prf(*(getattr(counts, k).sum(0) for k in COUNT_FIELDS))[2]
    return float(f.max() if threshold is None else f[threshold_index(threshold)])
