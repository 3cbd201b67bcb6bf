"""What /health and `crackal status` show per project: the version serving it and why,
and every task or label its last jobs skipped, with the reason."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from backend.pool_store import PoolStore
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
    try:
        trained = json.loads((registry.line_folder(project) / "trained.json").read_text())
    except (OSError, ValueError):
        trained = {}
    skipped_tasks = PoolStore(registry.root, project).load_skipped()
    skipped_labels = trained.get("skipped") or {}
    serving = registry.current(project)
    try:
        metrics = registry.meta(serving).get("metrics") if serving else None
    except RegistryError as exc:
        metrics = {"error": str(exc)}
    return {
        "serving": serving,
        "metrics": metrics,
        "own_line": registry.own_current(project) is not None,
        "last_switch": history[-1] if history else None,
        "last_trained": (
            {k: trained.get(k) for k in ("version", "decision", "time")} if trained else None
        ),
        "skipped_tasks": skipped_tasks,
        "skipped_labels": skipped_labels,
        "skipped_counts": _counts(skipped_tasks, skipped_labels),
    }


def _counts(tasks: dict[str, str], labels: dict[str, str]) -> dict[str, int]:
    """How many were skipped per kind of reason (its text before the first colon)."""
    kinds = Counter(f"task {r.split(':')[0]}" for r in tasks.values())
    kinds.update(f"label {r.split(':')[0]}" for r in labels.values())
    return dict(kinds)


def all_projects(registry_root: Path | str) -> dict[str, dict[str, Any]]:
    registry = Registry(registry_root)
    return {str(p): project_view(registry, p) for p in known_projects(registry)}
