"""Which annotation of a task counts, read from Label Studio's task JSON."""

from __future__ import annotations

from typing import Any


def is_labelled(task: dict[str, Any]) -> bool:
    """A task with at least one annotation that was not cancelled (skipped)."""
    return latest_annotation(task) is not None


def latest_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    """The newest annotation that was not cancelled; malformed entries are ignored."""
    annotations = task.get("annotations")
    if not isinstance(annotations, list):
        return None
    done = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    if not done:
        return None
    return max(done, key=lambda a: (str(a.get("updated_at") or ""), _int(a.get("id"))))


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0
