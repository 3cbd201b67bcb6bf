"""PCA fitted jointly on the training set P and one secondary set S (method.md, eqs. 3-5)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA

DEFAULT_COMPONENTS = 25


@dataclass
class JointProjection:
    """P and S in the shared low-dimensional space, and how much variance it keeps."""

    primary: np.ndarray  # (n, z) float64
    secondary: np.ndarray  # (m, z) float64
    components: int  # z actually used (asked-for z clamped to what the data allow)
    explained_variance_ratio: np.ndarray  # (z,), sums to <= 1

    @property
    def explained_variance(self) -> float:
        """Fraction of the joint variance kept by the z components (0 when there is none)."""
        return float(self.explained_variance_ratio.sum())


def fit_joint_pca(
    primary: np.ndarray, secondary: np.ndarray, components: int = DEFAULT_COMPONENTS
) -> JointProjection:
    """Fit scikit-learn's PCA (mean-centred, exact SVD) on [P; S] and project both.

    `components` is clamped to min(n + m, feature dim). Computed in float64.
    """
    primary = np.asarray(primary, dtype=np.float64)
    secondary = np.asarray(secondary, dtype=np.float64)
    if primary.ndim != 2 or secondary.ndim != 2:
        raise ValueError("features must be 2-D (images x features)")
    if len(primary) == 0 or len(secondary) == 0:
        raise ValueError(f"need images in both sets, got n={len(primary)}, m={len(secondary)}")
    if primary.shape[1] != secondary.shape[1]:
        raise ValueError(
            f"feature sizes differ: P has {primary.shape[1]}, S has {secondary.shape[1]}"
        )
    if components < 1:
        raise ValueError(f"need at least one component, got {components}")
    if not (np.isfinite(primary).all() and np.isfinite(secondary).all()):
        raise ValueError("features contain NaN or infinity")

    joint = np.vstack([primary, secondary])
    z = min(components, joint.shape[0], joint.shape[1])
    pca = PCA(n_components=z, svd_solver="full")
    with np.errstate(divide="ignore", invalid="ignore"):
        projected = pca.fit_transform(joint)
        ratio = np.nan_to_num(pca.explained_variance_ratio_, nan=0.0)
    n = len(primary)
    return JointProjection(projected[:n], projected[n:], z, ratio)
