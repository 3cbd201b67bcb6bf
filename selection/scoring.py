"""Scoring one secondary set against the training set: PCA on P u S, then I_dist and ranks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from selection.distances import DEFAULT_CHUNK_BYTES, dataset_distance, image_to_dataset_distances
from selection.projection import DEFAULT_COMPONENTS, fit_joint_pca
from selection.ranking import DEFAULT_BAND, in_band, min_max_scale, ranks


@dataclass
class SetScores:
    """Distances of every image of one secondary set S from the training set P."""

    name: str
    images: list[str]
    i_dist: np.ndarray  # (m,) float64, image-to-dataset distance
    scaled: np.ndarray  # (m,) min-max scaled I_dist within this set
    rank: np.ndarray  # (m,) 1 = farthest from P
    in_band: np.ndarray  # (m,) bool, scaled distance inside the candidate band
    components: int  # PCA components used (fitted on P u S)
    explained_variance: float  # fraction of the joint variance they keep

    @property
    def o_dist(self) -> float:
        """Dataset-to-dataset distance: the mean I_dist."""
        return dataset_distance(self.i_dist)


def score_set(
    name: str,
    images: Sequence[str],
    secondary: np.ndarray,
    primary: np.ndarray,
    components: int = DEFAULT_COMPONENTS,
    band: tuple[float, float] = DEFAULT_BAND,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> SetScores:
    """Fit PCA jointly on P and this S, then compute I_dist, its scaling, ranks and band."""
    if len(images) != len(secondary):
        raise ValueError(f"{len(images)} image names for {len(secondary)} feature rows")
    projection = fit_joint_pca(primary, secondary, components)
    i_dist = image_to_dataset_distances(projection.secondary, projection.primary, chunk_bytes)
    scaled = min_max_scale(i_dist)
    return SetScores(
        name=name,
        images=list(images),
        i_dist=i_dist,
        scaled=scaled,
        rank=ranks(i_dist),
        in_band=in_band(scaled, band),
        components=projection.components,
        explained_variance=projection.explained_variance,
    )
