"""The jobs the backend runs in the background, by name: importable by an rq worker."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from backend.job_kind import JobKind
from backend.label_studio import LabelStudioError
from backend.pool_store import PoolStore
from backend.project_lock import project_lock
from backend.retrain import (
    ThoroughStatus,
    judged_only,
    label_revisions,
    last_trained,
    retrain_project,
    thorough_due,
    thorough_pass,
    too_few_changes,
)
from backend.scoring_shards import ShardPool
from backend.service import RescoreReport, Service
from backend.settings import Settings
from training.device import resolve_device
from training.train import Adaptation, TrainConfig

log = logging.getLogger("crackal.jobs")


def retrain_preset(s: Settings) -> Adaptation:
    """A retrain's preset: the setting, else thorough where training runs on CUDA (about
    30 s on an H200) and quick on a CPU (about 50 s on 2 cores)."""
    if s.adaptation is not None:
        return s.adaptation
    return Adaptation.THOROUGH if resolve_device().type == "cuda" else Adaptation.QUICK


def retrain_config(s: Settings) -> TrainConfig:
    """The training settings of a retrain: its preset with the backend's settings (a
    thorough one within CRACKAL_THOROUGH_MINUTES)."""
    preset = retrain_preset(s)
    overrides: dict[str, Any] = {"skeleton_recall": s.skeleton_recall}
    if preset is Adaptation.THOROUGH:
        overrides["max_minutes"] = s.thorough_minutes
    if s.adapt_steps is not None:
        overrides["steps"] = s.adapt_steps
    if s.adapt_frozen_encoder is not None:
        overrides["freeze_encoder"] = s.adapt_frozen_encoder
    return preset.config(**overrides)


def thorough_follows(s: Settings) -> bool:
    """Whether a retrain is followed by a thorough pass once labelling pauses (a quick
    retrain, with CRACKAL_THOROUGH_WHEN_IDLE on)."""
    return s.thorough_when_idle and retrain_preset(s) is Adaptation.QUICK


def thorough_config(s: Settings) -> TrainConfig:
    """The training settings of a thorough pass while labelling pauses."""
    return TrainConfig.thorough(max_minutes=s.thorough_minutes, skeleton_recall=s.skeleton_recall)


def run_job(
    kind: str,
    project: int,
    service: Service,
    shards: ShardPool | None = None,
    waiting: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Run one job for one Label Studio project with `service`, never beside another job
    of the same project (a re-score and a retrain of it wait for each other). With
    `shards` (on rq), a large project's images are analysed on several workers before
    each scoring, the one after a retrain included. `waiting` says whether other jobs wait
    for a worker: a thorough pass then gives way (`thorough_yielded`). A project Label
    Studio no longer has (404) ends the job with that status instead of failing it into
    retries."""
    try:
        return _run_job(JobKind.parse(kind), project, service, shards, waiting)
    except LabelStudioError as exc:
        if exc.status != 404 or service.client.project_exists(project):
            raise
        # e.g. deleted in Label Studio while the registry still knows it: nothing to retry
        log.info("project %s: not in Label Studio, job %s has nothing to do", project, kind)
        return {"status": "no such project in Label Studio", "project": project}


def _run_job(
    kind: JobKind,
    project: int,
    service: Service,
    shards: ShardPool | None,
    waiting: Callable[[], bool] | None,
) -> dict[str, Any]:
    s = service.settings
    least = kind.least_changes(s.retrain_threshold)
    # labelling paused after a quick retrain: a thorough pass on its labels
    deepen = kind is JobKind.IDLE and thorough_follows(s)
    if deepen:
        before, revisions = last_trained(service, project), label_revisions(service, project)
        nothing_to_do = too_few_changes(service, project, least, revisions)  # before the lock
        if nothing_to_do is not None and not thorough_due(before, revisions):
            return nothing_to_do
        held_out_only = before.get("preset") == Adaptation.THOROUGH and judged_only(
            before, revisions
        )
        if held_out_only and not PoolStore(s.registry, project).stopped_half_way():
            return {  # judged twice already: they join the project's next retrain
                "status": "only held-out labels changed",
                "project": project,
                "last_trained": before.get("version"),
            }
    elif (nothing_to_do := too_few_changes(service, project, least)) is not None:
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

    def thorough() -> dict[str, Any]:
        return thorough_pass(service, project, thorough_config(s), s.promote, rescore, waiting)

    with project_lock(s.registry, project, wait=s.job_timeout):
        if kind is JobKind.RESCORE:
            return rescore(project).as_dict()
        if deepen:  # a quick retrain's held-out labels alone are no reason to repeat it
            deep = thorough()
            if deep["status"] not in (ThoroughStatus.NOT_DUE, ThoroughStatus.LABELS_CHANGED):
                return deep
        result = retrain_project(
            service, project, s.promote, retrain_config(s), least, rescore, retrain_preset(s)
        )
        if deepen and result.get("status") == "trained":
            result["thorough"] = thorough()
        return result


@functools.cache
def worker_service() -> Service:
    """The worker process's service, configured from its environment (built once)."""
    return Service(Settings.from_env())
