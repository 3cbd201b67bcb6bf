"""A project's own mask threshold: the serving version's own threshold moved toward the
pooled ODS threshold of the project's labelled images, by each retrain once the project has
enough labels, and kept if it wins leave-one-out (`training.threshold_choice`).

Kept in `<registry>/projects/project-<id>/threshold.json` for one version, with the rule
that chose it: a threshold for another version, or chosen by an earlier rule, is not used
(the version's own, from its validation set, is). A refused refit is recorded too
(threshold null, with its reason, and the figures when the labels were scored), so the
file always describes the last decision."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selection.atomic import atomic_write
from training.registry import project_folder


def _path(registry_root: Path | str, project: int) -> Path:
    return project_folder(registry_root, project) / "threshold.json"


# thresholds saved by earlier releases carry no rule or "leave-one-out" (the refit served
# unmoved, session 14) and are not used
RULE = "moved, leave-one-out"


def save_threshold(
    registry_root: Path | str,
    project: int,
    version: str,
    threshold: float | None,
    labels: int,
    **figures: Any,
) -> None:
    """Record the decision for `version`: its threshold, or None (the version's own serves)."""
    state = {
        "version": version,
        "threshold": None if threshold is None else float(threshold),
        "labels": labels,
        "rule": RULE,
        **figures,
    }
    with atomic_write(_path(registry_root, project), "w") as fh:
        json.dump(state, fh)


def forget_threshold(registry_root: Path | str, project: int, reason: str) -> bool:
    """The project's labels are gone or unusable: a threshold fitted on them stops serving
    (recorded as the version's own, with `reason`). True when a threshold was recorded
    (whether or not it was in use: the caller re-scores to be sure)."""
    state = load_threshold(registry_root, project)
    if not threshold_recorded(state):
        return False
    save_threshold(registry_root, project, state["version"], None, 0, reason=reason)
    return True


def threshold_recorded(state: dict[str, Any]) -> bool:
    """Whether a decision record holds a threshold (in use or not) for a named version."""
    return state.get("threshold") is not None and isinstance(state.get("version"), str)


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
    return threshold_for(load_threshold(registry_root, project), version)


def threshold_for(state: dict[str, Any], version: str | None) -> float | None:
    """The threshold a recorded decision gives `version`'s masks, or None (its own): only a
    decision for that version, by this rule, with a value inside (0, 1)."""
    value = state.get("threshold")
    if version is None or state.get("version") != version or state.get("rule") != RULE:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0.0 < value < 1.0 else None
