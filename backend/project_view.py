"""What /health and `crackal status` show per project: the version serving it and why,
and every task or label its last jobs skipped, with the reason."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from backend.last_retrain import read_last_retrain
from backend.pool_store import PoolStore
from backend.project_threshold import load_threshold, threshold_for
from training.registry import Registry, RegistryError


def known_projects(registry: Registry) -> list[int]:
    """Projects the backend has state for (connected, scored or trained)."""
    found = []
    for folder in (registry.root / "projects").glob("project-*"):
        suffix = folder.name.removeprefix("project-")
        if suffix.isdigit() and folder.is_dir():
            found.append(int(suffix))
    return sorted(found)


def project_view(registry: Registry, project: int) -> dict[str, Any]:
    history = registry.history(project)
    trained = read_last_retrain(registry.root, project)
    skipped_tasks = PoolStore(registry.root, project).load_skipped()
    skipped_labels = trained.get("skipped") if isinstance(trained.get("skipped"), dict) else {}
    serving = registry.current(project)
    try:
        metrics = registry.meta(serving).get("metrics") if serving else None
    except RegistryError as exc:
        metrics = {"error": str(exc)}
    return {
        "serving": serving,
        "metrics": metrics,
        "own_line": registry.own_current(project) is not None,
        "threshold": _threshold(registry.root, project, serving),
        "last_switch": history[-1] if history else None,
        "last_trained": (
            {k: trained.get(k) for k in ("version", "decision", "time", "preset")}
            if trained
            else None
        ),
        "skipped_tasks": skipped_tasks,
        "skipped_labels": skipped_labels,
        "skipped_counts": _counts(skipped_tasks, skipped_labels),
    }


# Kinds of reasons, by a phrase of the reason's text (first match); the reason itself is
# shown beside each skipped item.
KINDS = (
    ("refused", "address refused"),
    ("took longer", "download too slow"),
    ("larger than", "too large"),
    ("above crackal_max", "too large"),
    ("null byte", "bad URL or path"),
    ("url", "bad URL or path"),
    ("local path", "bad URL or path"),
    ("decode", "unreadable image"),
    ("image format", "unreadable image"),
    ("the image is", "mask of another size"),
    ("rle", "bad brush mask"),
    ("value", "bad annotation field"),
)


def reason_kind(reason: str) -> str:
    text = reason.lower()
    return next((kind for phrase, kind in KINDS if phrase in text), "other")


def _counts(tasks: dict[str, str], labels: dict[str, str]) -> dict[str, int]:
    """How many tasks and labels were skipped per kind of reason."""
    kinds = Counter(f"task: {reason_kind(r)}" for r in tasks.values())
    kinds.update(f"label: {reason_kind(r)}" for r in labels.values())
    return dict(kinds)


def all_projects(registry_root: Path | str) -> dict[str, dict[str, Any]]:
    registry = Registry(registry_root)
    return {str(p): project_view(registry, p) for p in known_projects(registry)}


def _threshold(root: Any, project: int, serving: str | None) -> dict[str, Any] | None:
    """The last threshold decision recorded, and whether the serving version's masks use it
    (`in_use`: a decision for another version, or by an earlier rule, is not)."""
    record = load_threshold(root, project)
    if not record:
        return None
    return {**record, "in_use": threshold_for(record, serving) is not None}
