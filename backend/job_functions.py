"""The jobs the backend runs in the background, by name: importable by an rq worker."""

from __future__ import annotations

import functools
import logging
from typing import Any

from backend.job_kind import JobKind
from backend.project_lock import project_lock
from backend.retrain import retrain_project, too_few_changes
from backend.scoring_shards import ShardPool
from backend.service import RescoreReport, Service
from backend.settings import Settings
from training.train import TrainConfig

log = logging.getLogger("crackal.jobs")


def run_job(
    kind: str, project: int, service: Service, shards: ShardPool | None = None
) -> dict[str, Any]:
    """Run one job for one Label Studio project with `service`, never beside another job
    of the same project (a re-score and a retrain of it wait for each other). With
    `shards` (on rq), a large project's images are analysed on several workers before
    each scoring, the one after a retrain included."""
    kind = JobKind.parse(kind)
    s = service.settings
    least = kind.least_changes(s.retrain_threshold)
    nothing_to_do = too_few_changes(service, project, least)  # without waiting for the lock
    if nothing_to_do is not None:
        return nothing_to_do

    def rescore(project_id: int) -> RescoreReport:
        run, pages = None, []
        if shards is not None:
            try:
                run, pages = shards.analyse(service, project_id)
            except Exception as exc:  # an optimisation only: score without it
                log.warning("project %s: scoring not split: %s", project_id, exc)
        report = service.rescore_project(project_id, run)
        report.shards = pages
        return report

    with project_lock(s.registry, project, wait=s.job_timeout):
        if kind is JobKind.RESCORE:
            return rescore(project).as_dict()
        config = TrainConfig.adapt(steps=s.adapt_steps, freeze_encoder=s.adapt_frozen_encoder)
        return retrain_project(service, project, s.promote, config, least, rescore)


@functools.cache
def worker_service() -> Service:
    """The worker process's service, configured from its environment (built once)."""
    return Service(Settings.from_env())
