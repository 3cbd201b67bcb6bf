"""The numbers of a project's dashboard, from what annotators do anyway: each submitted
label against the pre-annotation it started from (backend/edit_records.py), the model
versions of the project's line, and the scaled distances of the tasks still to label.

- the live curve: pre-annotation F against scaled I_dist, per model version (moving mean);
- F per distance bin with a bootstrap 95% interval, and the expected F of each remaining
  task read off a non-increasing fit of F against distance (selection/expected_f.py);
- the stop signal: the far images' F (scaled distance >= `far`) is within `tolerance` of the
  near ones' and at least `target`, each from >= MIN_PER_SIDE labels; its inputs and their
  intervals are part of the answer, so a reader sees how sure it is;
- the map of the pool as its last scoring drew it (t-SNE and DBSCAN clusters of the
  training and pool points; the far band and the labelled tasks marked).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from backend.edit_records import EditLog
from backend.last_retrain import read_last_retrain
from backend.pool_store import PoolStore
from backend.project_map import LABELLED, ProjectMap
from selection.expected_f import ExpectedF
from training.registry import Registry, RegistryError

BIN_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
MIN_PER_SIDE = 3
WINDOW = 5  # labels per moving mean of the live curve


def mean_interval(values: list[float], seed: int = 0) -> dict[str, float | int | None]:
    """Mean and bootstrap 95% interval (2,000 resamples, seeded) of `values`."""
    if not values:
        return {"n": 0, "mean": None, "low": None, "high": None}
    x = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(2000, len(x)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return {"n": len(x), "mean": float(x.mean()), "low": float(low), "high": float(high)}


def moving_curve(points: list[tuple[float, float]], window: int = WINDOW) -> list[list[float]]:
    """[distance, mean F] of each run of `window` consecutive points by distance."""
    points = sorted(points)
    if len(points) < window:
        window = len(points)
    out = []
    for i in range(len(points) - window + 1):
        chunk = points[i : i + window]
        out.append([float(np.mean([d for d, _ in chunk])), float(np.mean([f for _, f in chunk]))])
    return out


def _bin_of(distance: float) -> int:
    return min(int(np.searchsorted(BIN_EDGES, distance, side="right")) - 1, len(BIN_EDGES) - 2)


def dashboard_data(
    registry_root: Path | str,
    project: int,
    far: float = 0.6,
    tolerance: float = 0.05,
    target: float = 0.7,
) -> dict[str, Any]:
    records = EditLog(registry_root, project).read()
    edits = [
        {
            "task": r.task,
            "annotation": r.annotation,
            "prediction": r.prediction,
            "f": r.pixel_f,
            "tolerant_f": r.tolerant_f,
            "scaled_distance": r.scaled_distance,
            "model_version": r.model_version,
            "lead_time": r.lead_time,
            "label_pixels": r.label_pixels,
            "predicted_pixels": r.predicted_pixels,
            "updated_at": r.updated_at,
        }
        for r in records
    ]
    placed = [r for r in records if r.scaled_distance is not None]
    curves = {
        version: moving_curve(
            [(r.scaled_distance, r.pixel_f) for r in placed if r.model_version == version]
        )
        for version in sorted({r.model_version for r in placed})
    }
    bins = []
    for b in range(len(BIN_EDGES) - 1):
        inside = [r.pixel_f for r in placed if _bin_of(r.scaled_distance) == b]
        bins.append({"from": BIN_EDGES[b], "to": BIN_EDGES[b + 1], **mean_interval(inside, b)})
    near = mean_interval([r.pixel_f for r in placed if r.scaled_distance < far], 101)
    far_side = mean_interval([r.pixel_f for r in placed if r.scaled_distance >= far], 102)
    enough = near["n"] >= MIN_PER_SIDE and far_side["n"] >= MIN_PER_SIDE
    stop = bool(
        enough and far_side["mean"] >= target and abs(far_side["mean"] - near["mean"]) <= tolerance
    )
    labelled = {r.task for r in records}
    version, scaled = PoolStore(registry_root, project).load_distances()
    remaining = {t: d for t, d in scaled.items() if t not in labelled}
    expected = _expected(remaining, records)
    return {
        "project": project,
        "edits": edits,
        "curves": curves,
        "bins": bins,
        "remaining": {
            "version": version,
            "tasks": len(remaining),
            "scaled_distances": sorted(remaining.values()),
            "expected_f": expected,
        },
        "stop": {
            "stop": stop,
            "enough_labels": enough,
            "far_from": far,
            "tolerance": tolerance,
            "target": target,
            "near": near,
            "far": far_side,
            "rule": (
                f"stop when the far images' F (scaled distance >= {far}) is within "
                f"{tolerance} of the near ones' and at least {target}, each side from at "
                f"least {MIN_PER_SIDE} labels"
            ),
        },
        "versions": _versions(registry_root, project),
        "map": _map(registry_root, project, far, labelled),
    }


def _expected(remaining: dict[int, float], records: list[Any]) -> dict[str, Any]:
    """Expected F of each remaining task, read off the project's curve of F against
    distance (selection/expected_f.py: the prediction score Label Studio shows for a
    farthest-first queue), their mean, the curve on a grid, and how many remaining tasks
    are nearer than every label (for them the curve is a lower bound); None before it
    exists."""
    curve = ExpectedF.from_labels((r.scaled_distance, r.pixel_f) for r in records)
    if curve is None:
        return {"mean": None, "per_task": {}, "curve": []}
    grid = np.linspace(0.0, 1.0, 21)
    on_grid = zip(grid, curve(grid), strict=True)
    out: dict[str, Any] = {"curve": [[float(d), float(f)] for d, f in on_grid]}
    ids = list(remaining)
    values = curve(np.array([remaining[t] for t in ids])) if ids else np.zeros(0)
    out["per_task"] = {str(t): float(v) for t, v in zip(ids, values, strict=True)}
    out["mean"] = float(values.mean()) if ids else None
    out["nearest_label"] = curve.nearest
    out["nearer_than_labels"] = sum(remaining[t] < curve.nearest for t in ids)
    return out


def _map(
    registry_root: Path | str, project: int, far: float, labelled: set[int]
) -> dict[str, Any] | None:
    """The points of the project's map (backend/project_map.py) as drawn at its last
    scoring; None before the first."""
    found = ProjectMap.load(registry_root, project)
    if found is None:
        return None
    drawn = found.drawn
    training = []
    for row, (x, y), cluster in zip(
        drawn.primary_rows, drawn.primary_coords, drawn.clusters, strict=False
    ):
        name = found.primary_names[row]
        task = int(name[len(LABELLED) :]) if name.startswith(LABELLED) else None
        training.append(
            {"name": name, "task": task, "x": float(x), "y": float(y), "cluster": int(cluster)}
        )
    pool = []
    offset = len(drawn.primary_rows)
    for i, (row, (x, y)) in enumerate(zip(drawn.pool_rows, drawn.pool_coords, strict=True)):
        scaled = float(found.scaled[row])
        pool.append(
            {
                "task": int(found.pool_ids[row]),
                "x": float(x),
                "y": float(y),
                "cluster": int(drawn.clusters[offset + i]),
                "scaled_distance": scaled,
                "band": scaled >= far,
                "labelled_since": int(found.pool_ids[row]) in labelled,
            }
        )
    clusters = {int(c) for c in drawn.clusters if c >= 0}
    return {
        "version": found.version,
        "points": len(found.primary_names) + len(found.pool_ids),
        "drawn": len(drawn.coords),
        "clusters": len(clusters),
        "noise": int((drawn.clusters < 0).sum()),
        "training": training,
        "pool": pool,
    }


def _versions(registry_root: Path | str, project: int) -> list[dict[str, Any]]:
    """The project line's switches, with each version's metrics and why it serves."""
    registry = Registry(registry_root)
    out = []
    for entry in registry.history(project):
        try:
            meta = registry.meta(entry["version"])
        except (RegistryError, KeyError):
            meta = {}
        metrics = meta.get("metrics") or {}
        out.append(
            {
                "version": entry.get("version"),
                "time": entry.get("time"),
                "reason": entry.get("reason"),
                "val_ods": (metrics.get("val") or {}).get("ods"),
                "held_out_ods": (metrics.get("held_out") or {}).get("ods"),
                "labels": len((meta.get("training") or {}).get("added_images") or []),
            }
        )
    trained = read_last_retrain(registry.root, project)
    if trained.get("version") and not any(v["version"] == trained["version"] for v in out):
        out.append(
            {"version": trained["version"], "reason": trained.get("decision"), "promoted": False}
        )
    return out
