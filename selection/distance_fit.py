"""A stored fit of the method: PCA on P u S, P's projected points and the I_dist range.

The scoring job fits it on the whole pool (method.md: joint PCA, I_dist, min-max scaling)
and keeps it; images that arrive later (one `/predict` call) are projected with the same
basis and scaled with the same range, clipped to [0, 1], without refitting. Their numbers
are provisional: the next fit includes them in the PCA and the range.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA

from selection.atomic import atomic_write
from selection.distances import image_to_dataset_distances
from selection.projection import DEFAULT_COMPONENTS
from selection.ranking import SCALE_TOLERANCE, min_max_scale


@dataclass
class DistanceFit:
    mean: np.ndarray  # (q,) feature mean of P u S
    components: np.ndarray  # (z, q) PCA basis
    primary: np.ndarray  # (n, z) P's projected points
    low: float  # min I_dist over S at fit time
    high: float  # max I_dist over S at fit time

    @classmethod
    def fit(
        cls, primary: np.ndarray, secondary: np.ndarray, components: int = DEFAULT_COMPONENTS
    ) -> tuple[DistanceFit, np.ndarray]:
        """Fit on P u S; returns the fit and S's I_dist (exactly as `score_set` computes)."""
        primary = np.asarray(primary, dtype=np.float64)
        secondary = np.asarray(secondary, dtype=np.float64)
        if len(primary) == 0 or len(secondary) == 0:
            raise ValueError(f"need images in both sets, got n={len(primary)}, m={len(secondary)}")
        joint = np.vstack([primary, secondary])
        z = min(components, joint.shape[0], joint.shape[1])
        pca = PCA(n_components=z, svd_solver="full")
        projected = pca.fit_transform(joint)
        n = len(primary)
        i_dist = image_to_dataset_distances(projected[n:], projected[:n])
        fit = cls(
            pca.mean_, pca.components_, projected[:n], float(i_dist.min()), float(i_dist.max())
        )
        return fit, i_dist

    def i_dist(self, features: np.ndarray) -> np.ndarray:
        """I_dist of new feature rows under this fit's basis."""
        x = np.asarray(features, dtype=np.float64)
        return image_to_dataset_distances((x - self.mean) @ self.components.T, self.primary)

    def scaled(self, i_dist: np.ndarray) -> np.ndarray:
        """Min-max scaled with the fit's range, clipped to [0, 1]."""
        span = self.high - self.low
        if span <= SCALE_TOLERANCE * max(abs(self.high), 1.0):
            return np.zeros(len(i_dist))
        return np.clip((np.asarray(i_dist, dtype=np.float64) - self.low) / span, 0.0, 1.0)

    def scaled_at_fit(self, i_dist: np.ndarray) -> np.ndarray:
        """The scaling of the fitted pool itself (the paper's min-max over S)."""
        return min_max_scale(i_dist)

    def save(self, path: Path) -> None:
        with atomic_write(path) as fh:
            np.savez(
                fh,
                mean=self.mean,
                components=self.components,
                primary=self.primary,
                range=np.array([self.low, self.high]),
            )

    @classmethod
    def load(cls, path: Path) -> DistanceFit | None:
        """The stored fit, or None when there is none (or it cannot be read)."""
        try:
            with np.load(path) as z:
                low, high = (float(v) for v in z["range"])
                return cls(z["mean"], z["components"], z["primary"], low, high)
        except (OSError, KeyError, ValueError):
            return None
