"""The kinds of background job, and how many changed labels each needs before it trains."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class JobKind(StrEnum):
    """What a job does for one project. Every training kind counts changed labels in Label
    Studio first, so no label set is trained twice."""

    RESCORE = "rescore"  # score the pool with the serving version
    RETRAIN = "retrain"  # asked for ("Start training"): adapt if any label changed
    RECONCILE = "reconcile"  # adapt if at least the retrain threshold of labels changed
    IDLE = "idle"  # labelling paused: adapt if any label changed; then a thorough pass

    @classmethod
    def parse(cls, value: str) -> JobKind:
        """The kind named `value`; a ValueError naming the known kinds otherwise."""
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(k.value for k in cls)
            raise ValueError(f"unknown job kind {value!r} (known: {known})") from None

    def least_changes(self, retrain_threshold: int) -> int:
        """Changed labels this kind needs before it runs (0: it always runs)."""
        return {
            JobKind.RESCORE: 0,
            JobKind.RETRAIN: 1,
            JobKind.RECONCILE: retrain_threshold,
            JobKind.IDLE: 1,
        }[self]


def worth_giving_way(queued: Iterable[str]) -> bool:
    """Whether a thorough pass should give way to the queued jobs (keys "kind:project"):
    any but an idle job, which would itself wait for a pass (two passes stopping each
    other would never finish)."""
    return any(key.split(":", 1)[0] != JobKind.IDLE for key in queued)
