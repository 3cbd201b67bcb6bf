"""The jobs the backend runs in the background, by name: importable by an rq worker."""

from __future__ import annotations

import functools
from typing import Any

from backend.project_lock import project_lock
from backend.retrain import retrain_project
from backend.service import Service
from backend.settings import Settings
from training.train import TrainConfig

# rescore: score the pool; retrain: adapt to the labels (asked for, or enough new ones);
# reconcile: adapt only if some label changed since the project's last retrain.
KINDS = ("rescore", "retrain", "reconcile")


def run_job(kind: str, project: int, service: Service) -> dict[str, Any]:
    """Run one job for one Label Studio project with `service`, never beside another job
    of the same project (a re-score and a retrain of it wait for each other)."""
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r} (known: {', '.join(KINDS)})")
    with project_lock(service.settings.registry, project, wait=service.settings.job_timeout):
        if kind == "rescore":
            return service.rescore_project(project).as_dict()
        s = service.settings
        config = TrainConfig.adapt(steps=s.adapt_steps)
        return retrain_project(service, project, s.promote, config, only_if_new=kind == "reconcile")


@functools.cache
def worker_service() -> Service:
    """The worker process's service, configured from its environment (built once)."""
    return Service(Settings.from_env())
