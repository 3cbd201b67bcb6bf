"""A 2-D map of the training set and the pool, as the damage-embedding paper draws one
(`../shared/papers/mn-pair-contrastive-damage-clustering.txt`): the points of the method's
PCA space reduced to two axes by t-SNE, then clustered by DBSCAN (noise points: -1).

The map is drawn from the same projected points the distances are computed from, so a
point's neighbours on the map are a picture of its I_dist. t-SNE costs O(n log n) time and
memory, so at most `limit` points are drawn (a seeded sample of each set, in proportion).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import DBSCAN
from sklearn.manifold import TSNE

LIMIT = 2000  # points drawn at most
EPS = 3.0  # DBSCAN radius in t-SNE units (the paper's example value)
MIN_SAMPLES = 10  # DBSCAN core-point neighbours (the paper's example value)


@dataclass
class PoolMap:
    primary_rows: np.ndarray  # (a,) indices into P of the drawn training points
    pool_rows: np.ndarray  # (b,) indices into S of the drawn pool points
    coords: np.ndarray  # (a + b, 2) t-SNE coordinates, training points first
    clusters: np.ndarray  # (a + b,) DBSCAN cluster per point, -1 for noise

    @property
    def primary_coords(self) -> np.ndarray:
        return self.coords[: len(self.primary_rows)]

    @property
    def pool_coords(self) -> np.ndarray:
        return self.coords[len(self.primary_rows) :]


def draw_map(
    primary_points: np.ndarray, pool_points: np.ndarray, seed: int = 0, limit: int = LIMIT
) -> PoolMap:
    """t-SNE of P's and S's projected points (at most `limit` of them) and DBSCAN clusters.
    DBSCAN's core size is the paper's 10, lowered for maps of fewer than 200 points."""
    primary_points = np.asarray(primary_points, dtype=np.float64)
    pool_points = np.asarray(pool_points, dtype=np.float64)
    n, m = len(primary_points), len(pool_points)
    if n + m < 2:
        raise ValueError(f"a map needs at least 2 points, got {n + m}")
    rng = np.random.default_rng(seed)
    share = min(1.0, limit / (n + m))
    p_rows = _sample(rng, n, share)
    s_rows = _sample(rng, m, share)
    points = np.vstack([primary_points[p_rows], pool_points[s_rows]])
    if len(points) < 4:  # too few for t-SNE: the first two PCA axes
        coords = points[:, :2] if points.shape[1] >= 2 else np.pad(points, ((0, 0), (0, 1)))
    else:
        tsne = TSNE(
            n_components=2,
            perplexity=min(30.0, (len(points) - 1) / 3),
            init="pca",
            random_state=seed,
        )
        coords = tsne.fit_transform(points)
    core = max(2, min(MIN_SAMPLES, len(points) // 20))
    clusters = DBSCAN(eps=EPS, min_samples=core).fit_predict(coords)
    return PoolMap(p_rows, s_rows, coords.astype(np.float32), clusters.astype(np.int32))


def nearest_rows(primary_points: np.ndarray, point: np.ndarray, k: int) -> list[int]:
    """Indices of the `k` points of P nearest to `point` (Euclidean, in the PCA space of
    the distances), nearest first."""
    diff = np.asarray(primary_points, dtype=np.float64) - np.asarray(point, dtype=np.float64)
    distances = np.sqrt((diff * diff).sum(axis=1))
    return [int(i) for i in np.argsort(distances, kind="stable")[:k]]


def _sample(rng: np.random.Generator, count: int, share: float) -> np.ndarray:
    if share >= 1.0:
        return np.arange(count)
    keep = max(1, round(count * share)) if count else 0
    return np.sort(rng.choice(count, size=keep, replace=False))
