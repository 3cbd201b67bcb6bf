"""Project-level operations of the backend, shared by the HTTP handlers and the jobs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from backend.label_config import BrushTarget, parse_brush_target
from backend.label_studio import LabelStudio
from backend.scorer import PoolScores, Scorer, is_labelled
from backend.settings import Settings

log = logging.getLogger("crackal.backend")

SAMPLING = "Uncertainty sampling"


def project_id_of(value: Any) -> int:
    """Label Studio sends the project as 7, "7", "7.1712345678" or {"id": 7, ...}."""
    if isinstance(value, dict):
        value = value.get("id")
    try:
        return int(str(value).split(".")[0])
    except (TypeError, ValueError):
        raise ValueError(f"not a project id: {value!r}") from None


@dataclass
class RescoreReport:
    project: int
    model_version: str
    tasks: int
    predictions: int
    labelled: int
    errors: dict[int, str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "model_version": self.model_version,
            "tasks": self.tasks,
            "predictions": self.predictions,
            "labelled": self.labelled,
            "errors": {str(k): v for k, v in self.errors.items()},
        }


class Service:
    """The backend's work on Label Studio projects."""

    def __init__(
        self, settings: Settings, scorer: Scorer | None = None, client: LabelStudio | None = None
    ) -> None:
        self.settings = settings
        self.scorer = scorer or Scorer(settings)
        self.client = client or LabelStudio(settings)

    def target(self, project_id: int) -> BrushTarget:
        return parse_brush_target(self.client.project(project_id)["label_config"])

    def rescore_project(self, project_id: int) -> RescoreReport:
        """Score every task, replace the project's predictions, order its queue.

        All tasks are read from the API (never from a webhook's payload), so the pool,
        the PCA and the scaling always cover the whole project.
        """
        target = self.target(project_id)
        tasks = list(self.client.tasks(project_id))
        images, errors = self.scorer.fetch_all(tasks, target)
        pool = self.scorer.score_pool(tasks, target, images)
        pool.errors.update(errors)
        unlabelled = [t for t in tasks if not is_labelled(t)]
        predictions = self.scorer.predictions(unlabelled, target, pool, images)
        self.client.delete_predictions(project_id)
        self.client.import_predictions(project_id, predictions)
        self.order_queue(project_id, pool.model_version)
        log.info(
            "project %s: %d predictions imported (model %s), %d errors",
            project_id,
            len(predictions),
            pool.model_version,
            len(pool.errors),
        )
        return RescoreReport(
            project_id, pool.model_version, len(tasks), len(predictions), pool.labelled, pool.errors
        )

    def order_queue(self, project_id: int, model_version: str) -> None:
        """Farthest first: uncertainty sampling over predictions of `model_version`."""
        if self.settings.order_queue:
            self.client.update_project(project_id, sampling=SAMPLING, model_version=model_version)
        else:
            self.client.update_project(project_id, model_version=model_version)

    def predict(
        self, tasks: list[dict[str, Any]], label_config: str, project: Any
    ) -> list[list[dict[str, Any]]]:
        """Predictions for the tasks of a /predict call, one list per task (empty when the
        task's image could not be used). Scores are those of the whole project's pool."""
        target = parse_brush_target(label_config)
        images, errors = self.scorer.fetch_all(tasks, target)
        pool = self._pool_for(project, tasks, target, images)
        pool.errors.update(errors)
        by_task = {p["task"]: p for p in self.scorer.predictions(tasks, target, pool, images)}
        for task in tasks:
            if task["id"] not in by_task:
                log.warning(
                    "task %s: no prediction: %s",
                    task["id"],
                    pool.errors.get(task["id"], "unknown reason"),
                )
        return [[_strip(by_task[t["id"]])] if t["id"] in by_task else [] for t in tasks]

    def _pool_for(
        self,
        project: Any,
        tasks: list[dict[str, Any]],
        target: BrushTarget,
        images: dict[int, bytes],
    ) -> PoolScores:
        """The whole project's pool when Label Studio can be asked for it, else the tasks
        of this call alone (then the scores are relative to these tasks only)."""
        if project is None:  # a caller outside Label Studio: these tasks are the pool
            return self.scorer.score_pool(tasks, target, images)
        try:
            project_id = project_id_of(project)
            all_tasks = list(self.client.tasks(project_id))
        except Exception as exc:  # scoring must not fail the prediction
            log.warning("scoring only the %d tasks of this call: %s", len(tasks), exc)
            return self.scorer.score_pool(tasks, target, images)
        known = {t["id"] for t in all_tasks}
        pool_tasks = all_tasks + [t for t in tasks if t["id"] not in known]
        wanted = {t["id"] for t in tasks}
        extra_images, _ = self.scorer.fetch_all(
            [t for t in pool_tasks if t["id"] not in wanted], target
        )
        return self.scorer.score_pool(pool_tasks, target, {**extra_images, **images})


def _strip(prediction: dict[str, Any]) -> dict[str, Any]:
    return {k: prediction[k] for k in ("model_version", "score", "result")}
