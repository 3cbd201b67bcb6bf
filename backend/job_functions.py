"""The jobs the backend runs in the background, by name: importable by an rq worker."""

from __future__ import annotations

import functools
from typing import Any

from backend.project_lock import project_lock
from backend.retrain import retrain_project, too_few_changes
from backend.scoring_shards import ShardPool
from backend.service import RescoreReport, Service
from backend.settings import Settings
from training.train import TrainConfig

# rescore: score the pool; retrain: adapt to the labels (asked for: "Start training");
# reconcile: adapt if at least the retrain threshold of labels changed since the last
# retrain (the webhooks counted that many, or were missed); idle: adapt if any label
# changed (labels below the threshold, once none came for the idle delay).
KINDS = ("rescore", "retrain", "reconcile", "idle")


def run_job(
    kind: str, project: int, service: Service, shards: ShardPool | None = None
) -> dict[str, Any]:
    """Run one job for one Label Studio project with `service`, never beside another job
    of the same project (a re-score and a retrain of it wait for each other). With
    `shards` (on rq), a large project's images are analysed on several workers before
    each scoring, the one after a retrain included."""
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r} (known: {', '.join(KINDS)})")
    s = service.settings
    least = {"rescore": 0, "retrain": 0, "reconcile": s.retrain_threshold, "idle": 1}[kind]
    nothing_to_do = too_few_changes(service, project, least)  # without waiting for the lock
    if nothing_to_do is not None:
        return nothing_to_do

    def rescore(project_id: int) -> RescoreReport:
        pages = shards.analyse(service, project_id) if shards else []
        report = service.rescore_project(project_id)
        report.shards = pages
        return report

    with project_lock(s.registry, project, wait=s.job_timeout):
        if kind == "rescore":
            return rescore(project).as_dict()
        config = TrainConfig.adapt(steps=s.adapt_steps)
        return retrain_project(service, project, s.promote, config, least, rescore)


@functools.cache
def worker_service() -> Service:
    """The worker process's service, configured from its environment (built once)."""
    return Service(Settings.from_env())
