"""A project's own mask threshold: the serving version's pooled ODS threshold over the
project's labelled images, refitted by each retrain once the project has enough labels.

Kept in `<registry>/projects/project-<id>/threshold.json` for one version: a threshold
fitted for another version is not used (the version's own, from its validation set, is)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selection.atomic import atomic_write
from training.registry import project_folder

MIN_LABELS = 3  # fewer labelled images do not refit the threshold


def _path(registry_root: Path | str, project: int) -> Path:
    return project_folder(registry_root, project) / "threshold.json"


def save_threshold(
    registry_root: Path | str, project: int, version: str, threshold: float, labels: int
) -> None:
    state = {"version": version, "threshold": float(threshold), "labels": labels}
    with atomic_write(_path(registry_root, project), "w") as fh:
        json.dump(state, fh)


def forget_threshold(registry_root: Path | str, project: int, version: str) -> None:
    """Drop the project's threshold if it was fitted for `version` (one for another version
    is not in use anyway)."""
    if load_threshold(registry_root, project).get("version") == version:
        _path(registry_root, project).unlink(missing_ok=True)


def load_threshold(registry_root: Path | str, project: int) -> dict[str, Any]:
    try:
        state = json.loads(_path(registry_root, project).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def project_threshold(registry_root: Path | str, project: int | None, version: str) -> float | None:
    """The project's threshold for `version`, or None (use the version's own)."""
    if project is None:
        return None
    state = load_threshold(registry_root, project)
    value = state.get("threshold")
    if state.get("version") != version or not isinstance(value, int | float):
        return None
    return float(value) if 0.0 < value < 1.0 else None
