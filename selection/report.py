"""Writing a scoring run to disk: scores.csv, summary.json and saved features."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from selection.atomic import atomic_write
from selection.distances import scaled_dataset_distances
from selection.scoring import SetScores

CSV_COLUMNS = ("set", "image", "i_dist", "scaled", "rank", "in_band")


def write_scores_csv(path: Path, sets: Sequence[SetScores]) -> None:
    """One row per secondary image: set, image, i_dist, scaled, rank, in_band (0/1)."""
    with atomic_write(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for s in sets:
            for i, image in enumerate(s.images):
                writer.writerow(
                    [
                        s.name,
                        image,
                        repr(float(s.i_dist[i])),
                        repr(float(s.scaled[i])),
                        int(s.rank[i]),
                        int(s.in_band[i]),
                    ]
                )


def summary(
    sets: Sequence[SetScores],
    *,
    train_size: int,
    extractor: str,
    extractor_version: str,
    components: int,
    band: tuple[float, float],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's summary: per set n, O_dist, O_dist scaled over the sets, variance kept."""
    scaled = scaled_dataset_distances({s.name: s.o_dist for s in sets})
    out: dict[str, Any] = {
        "train_size": train_size,
        "extractor": extractor,
        "extractor_version": extractor_version,
        "components_requested": components,
        "band": list(band),
        "pca_fitted_on": "train + each set separately (P u S_i)",
        "sets": {
            s.name: {
                "n": len(s.images),
                "o_dist": s.o_dist,
                "o_dist_scaled": scaled[s.name],
                "components": s.components,
                "explained_variance": s.explained_variance,
                "in_band": int(s.in_band.sum()),
            }
            for s in sets
        },
    }
    out.update(extra or {})
    return out


def write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_write(path, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")


def save_features(path: Path, names: Sequence[str], features: np.ndarray) -> None:
    """`features` (float32 rows) and `names` (image file names) in one .npz."""
    with atomic_write(path) as fh:
        np.savez(fh, features=features, names=np.asarray(list(names), dtype=str))
