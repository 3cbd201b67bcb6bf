"""The retraining job: adapt the current model to a project's labels, then re-score.

It reads every current annotation from the Label Studio API (never from webhook payloads,
so a missed webhook only delays training), writes the labelled tasks as an image/mask set
under `<registry>/labels/project-<id>/`, fine-tunes the current version on the base
training set plus those images, evaluates it (validation ODS, and ODS on the labels),
registers it, makes it current when the promotion policy allows, and re-scores the pool.
A failure at any step leaves the previous version serving.
"""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from backend.scorer import is_labelled
from backend.service import Service
from selection.atomic import atomic_write
from selection.images import decode_rgb
from training.data import find_samples, load
from training.fit import fit_version
from training.train import TrainConfig

log = logging.getLogger("crackal.retrain")

SUFFIX_OF_FORMAT = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "BMP": ".bmp"}


def labels_folder(service: Service, project_id: int) -> Path:
    return Path(service.settings.registry) / "labels" / f"project-{project_id}"


def export_labels(service: Service, project_id: int) -> tuple[Path, list[int]]:
    """Write every labelled task's image and mask (latest annotation) as a dataset folder;
    returns the folder and the task ids in it. Tasks whose image fails are logged, skipped."""
    target = service.target(project_id)
    tasks = [t for t in service.client.tasks(project_id) if is_labelled(t)]
    folder = labels_folder(service, project_id)
    fresh = folder.with_name(folder.name + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    (fresh / "images").mkdir(parents=True)
    (fresh / "masks").mkdir()
    exported = []
    images, errors = service.scorer.fetch_all(tasks, target)
    for task in tasks:
        tid = task["id"]
        if tid not in images:
            log.warning("task %s: label not used: %s", tid, errors.get(tid))
            continue
        mask = service.scorer.labelled_mask(task, target, images[tid])
        _write_image(fresh / "images" / f"task-{tid}", images[tid])
        with atomic_write(fresh / "masks" / f"task-{tid}.png") as fh:
            Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(fh, "PNG")
        exported.append(tid)
    shutil.rmtree(folder, ignore_errors=True)
    fresh.rename(folder)
    return folder, exported


def _write_image(stem: Path, data: bytes) -> None:
    """The original bytes when the format is one the datasets use, else a PNG."""
    with Image.open(io.BytesIO(data)) as img:
        suffix = SUFFIX_OF_FORMAT.get(img.format or "")
        if suffix is None:
            with atomic_write(stem.with_suffix(".png")) as fh:
                Image.fromarray(decode_rgb(data, stem.name)).save(fh, "PNG")
            return
    with atomic_write(stem.with_suffix(suffix)) as fh:
        fh.write(data)


def retrain_project(
    service: Service, project_id: int, promote: str = "if-better", config: TrainConfig | None = None
) -> dict[str, Any]:
    """Adapt the current model to the project's labels; returns what happened."""
    settings = service.settings
    folder, task_ids = export_labels(service, project_id)
    if not task_ids:
        service.rescore_project(project_id)
        return {"status": "no labels yet", "project": project_id}
    labels = load(find_samples(folder, set_name=f"project-{project_id}"))
    base = load(find_samples(settings.base_train)) if settings.base_train else []
    val = load(find_samples(settings.base_val)) if settings.base_val else []
    parent = service.scorer.registry.resolve("current")
    outcome = fit_version(
        service.scorer.registry,
        base,
        val,
        parent=parent,
        added_items=labels,
        config=config or TrainConfig.adapt(),
        promote=promote,
        progress=False,
        note=f"adapted to {len(labels)} labels of Label Studio project {project_id}",
        also_evaluate={"labelled": labels},
    )
    log.info("project %s: %s (%s)", project_id, outcome.version, outcome.reason)
    rescored = service.rescore_project(project_id)
    return {
        "status": "trained",
        "project": project_id,
        "labels": len(labels),
        "tasks": task_ids,
        "version": outcome.version,
        "parent": parent,
        "promoted": outcome.promoted,
        "reason": outcome.reason,
        "metrics": outcome.meta["metrics"],
        "serving": rescored.model_version,
    }
