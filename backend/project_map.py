"""The map of a project's pool as its last scoring drew it (selection/pool_map.py), kept in
`<registry>/projects/project-<id>/map.npz` with what a drill-down needs: every point of P
and S in the distances' PCA space, P's names (a base image's path under
CRACKAL_BASE_TRAIN, or `task <id>` for a labelled task) and S's task ids."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selection.atomic import atomic_write
from selection.distance_fit import DistanceFit
from selection.pool_map import PoolMap, draw_map, nearest_rows
from training.registry import project_folder

LABELLED = "task "  # prefix of a labelled task's name among P's


@dataclass
class ProjectMap:
    version: str  # the model version that scored the pool
    primary_names: list[str]  # (n,) P's images
    pool_ids: np.ndarray  # (m,) S's task ids
    primary_points: np.ndarray  # (n, z) P in the PCA space of the distances
    pool_points: np.ndarray  # (m, z)
    scaled: np.ndarray  # (m,) S's scaled I_dist
    drawn: PoolMap

    @classmethod
    def draw(
        cls,
        version: str,
        fit: DistanceFit,
        primary_names: list[str],
        pool_ids: list[int],
        pool_features: np.ndarray,
        scaled: np.ndarray,
        seed: int = 0,
    ) -> ProjectMap:
        """Project S with the fit's basis (P is already projected) and draw the map."""
        pool_points = (np.asarray(pool_features, dtype=np.float64) - fit.mean) @ fit.components.T
        if len(primary_names) != len(fit.primary):
            raise ValueError(f"{len(primary_names)} names for {len(fit.primary)} points of P")
        drawn = draw_map(fit.primary, pool_points, seed)
        return cls(
            version,
            list(primary_names),
            np.asarray(pool_ids, dtype=np.int64),
            fit.primary.astype(np.float32),
            pool_points.astype(np.float32),
            np.asarray(scaled, dtype=np.float32),
            drawn,
        )

    def shows(
        self, version: str, primary_names: list[str], pool_ids: list[int], scaled: np.ndarray
    ) -> bool:
        """Whether this map was drawn for this version, P, pool and distances (1e-6)."""
        try:
            return (
                self.version == version
                and self.primary_names == list(primary_names)
                and np.array_equal(self.pool_ids, pool_ids)
                and np.allclose(self.scaled, scaled, atol=1e-6)
            )
        except ValueError:  # arrays that disagree: not this pool
            return False

    def nearest_training(self, task: int, k: int = 5) -> list[str]:
        """Names of the `k` images of P nearest to task `task` (a pool task)."""
        where = np.flatnonzero(self.pool_ids == task)
        if not len(where):
            raise KeyError(task)
        rows = nearest_rows(self.primary_points, self.pool_points[where[0]], k)
        return [self.primary_names[i] for i in rows]

    def save(self, registry_root: Path | str, project: int) -> None:
        path = map_path(registry_root, project)
        with atomic_write(path) as fh:
            np.savez(
                fh,
                version=np.asarray(self.version),
                primary_names=np.asarray(self.primary_names, dtype=str),
                pool_ids=self.pool_ids,
                primary_points=self.primary_points,
                pool_points=self.pool_points,
                scaled=self.scaled,
                primary_rows=self.drawn.primary_rows,
                pool_rows=self.drawn.pool_rows,
                coords=self.drawn.coords,
                clusters=self.drawn.clusters,
            )

    @classmethod
    def load(cls, registry_root: Path | str, project: int) -> ProjectMap | None:
        """The stored map, or None when absent or unreadable."""
        try:
            with np.load(map_path(registry_root, project), allow_pickle=False) as z:
                drawn = PoolMap(z["primary_rows"], z["pool_rows"], z["coords"], z["clusters"])
                if not all(
                    a.ndim == 1 and a.dtype.kind == "i" and (a >= 0).all()
                    for a in (drawn.primary_rows, drawn.pool_rows, z["pool_ids"])
                ):
                    return None
                if drawn.coords.ndim != 2 or drawn.coords.shape[1] != 2:
                    return None
                found = cls(
                    str(z["version"]),
                    [str(n) for n in z["primary_names"]],
                    z["pool_ids"],
                    z["primary_points"],
                    z["pool_points"],
                    z["scaled"],
                    drawn,
                )
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        n, m = len(found.primary_names), len(found.pool_ids)
        consistent = (
            found.primary_points.ndim == 2
            and found.pool_points.ndim == 2
            and found.primary_points.shape[1] == found.pool_points.shape[1]
            and found.primary_points.shape[0] == n
            and found.pool_points.shape[0] == m
            and found.scaled.shape == (m,)
            and len(drawn.coords) == len(drawn.primary_rows) + len(drawn.pool_rows)
            and len(drawn.clusters) == len(drawn.coords)
            and (drawn.primary_rows < n).all()
            and (drawn.pool_rows < m).all()
        )
        return found if consistent else None


def map_path(registry_root: Path | str, project: int) -> Path:
    return project_folder(registry_root, project) / "map.npz"
