"""The record of a project's last finished retrain (`trained.json` in its registry folder):
which label revisions it trained on, the labels it held out (all, and this round's), the
labels it skipped and why, the version it made and the decision on it, and its preset
(quick or thorough; a thorough pass rewrites the record of the quick retrain before it).
The one place that reads or writes it;
a missing or damaged record reads as {} (no retrain yet)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selection.atomic import atomic_write
from training.registry import project_folder


def record_path(registry_root: Path | str, project: int) -> Path:
    return project_folder(registry_root, project) / "trained.json"


def read_last_retrain(registry_root: Path | str, project: int) -> dict[str, Any]:
    """The project's record, or {} before its first retrain (or when the file is damaged)."""
    try:
        state = json.loads(record_path(registry_root, project).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def write_last_retrain(registry_root: Path | str, project: int, state: dict[str, Any]) -> None:
    """Replace the project's record atomically."""
    with atomic_write(record_path(registry_root, project), "w") as fh:
        json.dump(state, fh)
