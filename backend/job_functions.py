"""The jobs the backend runs in the background, by name: importable by an rq worker."""

from __future__ import annotations

import functools
from typing import Any

from backend.retrain import retrain_project
from backend.service import Service
from backend.settings import Settings
from training.train import TrainConfig

KINDS = ("rescore", "retrain")


def run_job(kind: str, project: int, service: Service) -> dict[str, Any]:
    """Run one job for one Label Studio project with `service`."""
    if kind == "rescore":
        return service.rescore_project(project).as_dict()
    if kind == "retrain":
        s = service.settings
        return retrain_project(service, project, s.promote, TrainConfig.adapt(steps=s.adapt_steps))
    raise ValueError(f"unknown job kind {kind!r} (known: {', '.join(KINDS)})")


@functools.cache
def worker_service() -> Service:
    """The worker process's service, configured from its environment (built once)."""
    return Service(Settings.from_env())
