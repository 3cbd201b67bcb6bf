"""Which unlabeled images to label next: the selection strategies the campaign compares.

Every strategy sees one round's state - features of the training set P (which grows with
every label) and of the remaining pool S - and returns `b` pool indices, best first.
Distance-based strategies fit PCA jointly on P u S each round (method.md), so the ranking
is refitted as labels arrive, exactly as the backend's re-scoring does.

- `farthest`: the paper's order (`CRACKAL_STRATEGY=farthest`): largest I_dist first.
- `band`: the paper's candidates: uniformly among scaled I_dist in the band (farthest
  outside the band fill up when the band is short).
- `random`: uniformly over S.
- `kcenter`: greedy k-center (coreset) in the joint PCA space: each pick maximises its
  Euclidean distance to the nearest point of P and of the picks so far.
- `uncertainty`: largest mean binary entropy of the model's crack probabilities.
- `band-kcenter` (ours): greedy k-center restricted to the band: far from P, and far from
  each other, so a batch does not spend labels on near-duplicates of one far image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from selection.distances import image_to_dataset_distances
from selection.projection import DEFAULT_COMPONENTS, fit_joint_pca
from selection.ranking import DEFAULT_BAND, farthest_first, in_band, min_max_scale


class Strategy(StrEnum):
    FARTHEST = "farthest"
    BAND = "band"
    RANDOM = "random"
    KCENTER = "kcenter"
    UNCERTAINTY = "uncertainty"
    BAND_KCENTER = "band-kcenter"


@dataclass
class RoundState:
    """What a strategy may look at in one round."""

    primary: np.ndarray  # (n, q) features of P and of every image labelled so far
    pool: np.ndarray  # (m, q) features of the images still unlabeled
    rng: np.random.Generator
    uncertainty: Callable[[], np.ndarray] | None = None  # (m,) per pool image, on demand
    components: int = DEFAULT_COMPONENTS
    band: tuple[float, float] = DEFAULT_BAND


def choose(strategy: Strategy | str, state: RoundState, b: int) -> list[int]:
    """`b` distinct pool indices (fewer when the pool is smaller), in pick order."""
    strategy = Strategy(strategy)
    m = len(state.pool)
    b = min(b, m)
    if b <= 0:
        return []
    if strategy is Strategy.RANDOM:
        return [int(i) for i in state.rng.choice(m, size=b, replace=False)]
    if strategy is Strategy.UNCERTAINTY:
        if state.uncertainty is None:
            raise ValueError("the uncertainty strategy needs the model's probabilities")
        values = np.asarray(state.uncertainty(), dtype=np.float64)
        return [int(i) for i in np.argsort(-values, kind="stable")[:b]]
    projection = fit_joint_pca(state.primary, state.pool, state.components)
    i_dist = image_to_dataset_distances(projection.secondary, projection.primary)
    if strategy is Strategy.FARTHEST:
        return [int(i) for i in farthest_first(i_dist)[:b]]
    band = in_band(min_max_scale(i_dist), state.band)
    if strategy is Strategy.BAND:
        inside = state.rng.permutation(np.flatnonzero(band))
        outside = [i for i in farthest_first(i_dist) if not band[i]]
        return [int(i) for i in [*inside, *outside][:b]]
    if strategy is Strategy.KCENTER:
        return k_center_greedy(projection.secondary, projection.primary, b)
    if strategy is Strategy.BAND_KCENTER:
        candidates = np.flatnonzero(band)
        picks = [
            int(candidates[i])
            for i in k_center_greedy(projection.secondary[candidates], projection.primary, b)
        ]
        chosen = set(picks)
        rest = [int(i) for i in farthest_first(i_dist) if i not in chosen]
        return (picks + rest)[:b]
    raise ValueError(f"unknown strategy {strategy!r}")


GREEDY_PICKS = 2000  # k-center picks made one by one; a longer order continues by distance


def k_center_greedy(
    points: np.ndarray, centres: np.ndarray, k: int, greedy: int = GREEDY_PICKS
) -> list[int]:
    """Indices of `points` picked greedily, each the farthest from its nearest centre so
    far (the given `centres`, then the picks). Ties go to the lower index. Each pick costs
    a pass over the points, so after `greedy` picks the rest follow in one step, farthest
    from their nearest centre (P and the picks) first: a queue of 100,000 images costs
    2,000 passes, not 100,000."""
    points = np.asarray(points, dtype=np.float64)
    k = min(k, len(points))
    if k <= 0:
        return []
    if len(centres):
        nearest = _min_distances(points, np.asarray(centres, dtype=np.float64))
    else:
        nearest = np.full(len(points), np.inf)
    picks: list[int] = []
    for _ in range(min(k, greedy)):
        nearest[picks] = -1.0
        i = int(np.argmax(nearest))
        picks.append(i)
        nearest = np.minimum(nearest, np.linalg.norm(points - points[i], axis=1))
    if len(picks) < k:
        nearest[picks] = -1.0
        rest = np.argsort(-nearest, kind="stable")[: k - len(picks)]
        picks += [int(i) for i in rest]
    return picks


def _min_distances(points: np.ndarray, centres: np.ndarray, rows: int = 1024) -> np.ndarray:
    out = np.empty(len(points))
    c_sq = (centres**2).sum(axis=1)
    for start in range(0, len(points), rows):
        block = points[start : start + rows]
        d2 = (block**2).sum(axis=1)[:, None] + c_sq[None, :] - 2 * block @ centres.T
        out[start : start + rows] = np.sqrt(np.maximum(d2, 0.0)).min(axis=1)
    return out


def mean_entropy(probs: np.ndarray) -> float:
    """Mean binary entropy (bits) of a crack probability map: 0 when the model is sure."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    return float(np.mean(-(p * np.log2(p) + (1 - p) * np.log2(1 - p))))
