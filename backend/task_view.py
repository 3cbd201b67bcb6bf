"""One pool task opened from the map: its image, the pre-annotation crackal gave it, a
Grad-CAM map of the crack logit, and its nearest training images (in the PCA space of the
distances). Costs one task: its image, at most `k` training images and one forward and
backward pass."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from backend.brush import BrushError, rle_mask
from backend.image_source import fetch_image_bytes
from backend.pool_store import PoolStore
from backend.project_map import LABELLED, ProjectMap
from backend.service import Service
from selection.images import decode_rgb, read_rgb
from training.grad_cam import crack_cam

SHOWN_SIDE = 480  # pixels of the longest side of every image shown


class TaskViewError(LookupError):
    """The task cannot be shown (no map yet, not in the pool, image unavailable)."""


@dataclass
class Neighbour:
    name: str
    image: np.ndarray | None  # shown size; None when it could not be read
    problem: str | None = None


@dataclass
class TaskView:
    project: int
    task: int
    version: str  # the version serving now: its pre-annotation and Grad-CAM
    scored_by: str  # the version whose scoring drew the map and measured the distance
    scaled_distance: float
    cluster: int | None  # DBSCAN cluster on the map; None when the task was not drawn
    image: np.ndarray  # shown size
    mask: np.ndarray | None  # the pre-annotation at shown size; None when not cached
    cam: np.ndarray  # Grad-CAM at shown size, in [0, 1]
    nearest: list[Neighbour] = field(default_factory=list)


def task_view(service: Service, project: int, task: int, k: int = 5) -> TaskView:
    settings = service.settings
    pool_map = ProjectMap.load(settings.registry, project)
    if pool_map is None:
        raise TaskViewError(f"project {project} has no map yet (it is drawn when scored)")
    where = np.flatnonzero(pool_map.pool_ids == task)
    index = PoolStore(settings.registry, project).load_index()  # read once per page
    entry = index.get(task)
    if not len(where) or entry is None:
        raise TaskViewError(f"task {task} is not in project {project}'s pool")
    try:
        data = fetch_image_bytes(entry.get("url"), settings, service.session, service.client, task)
        image = decode_rgb(data)
    except Exception as exc:
        raise TaskViewError(f"task {task}'s image: {exc}") from None
    try:
        serving = service.holder.current(project)
        cam = crack_cam(serving.model.model, image, serving.model.encoder)
    except Exception as exc:
        raise TaskViewError(f"no model to explain task {task} with: {exc}") from None
    mask = None
    cached = service.masks(serving, service.threshold(serving, project)).get(str(entry.get("sha")))
    if cached is not None:
        try:
            mask = rle_mask(*cached)
        except (BrushError, ValueError, IndexError, OverflowError):  # a damaged cache entry
            mask = None
    drawn = np.flatnonzero(pool_map.drawn.pool_rows == where[0])
    offset = len(pool_map.drawn.primary_rows)
    cluster = int(pool_map.drawn.clusters[offset + drawn[0]]) if len(drawn) else None
    size = _shown_size(image.shape[:2])
    return TaskView(
        project,
        task,
        serving.version,
        pool_map.version,
        float(pool_map.scaled[where[0]]),
        cluster,
        _resize(image, size),
        None if mask is None else _resize(mask.astype(np.uint8) * 255, size) > 127,
        np.asarray(Image.fromarray(cam).resize(size[::-1], Image.BILINEAR)),
        [_neighbour(service, index, name) for name in pool_map.nearest_training(task, k)],
    )


def _neighbour(service: Service, index: dict[int, dict[str, str]], name: str) -> Neighbour:
    """A training image by its name on the map: a base image under CRACKAL_BASE_TRAIN or a
    labelled task of the project."""
    settings = service.settings
    try:
        if name.startswith(LABELLED):
            tid = int(name[len(LABELLED) :])
            entry = index.get(tid)
            if entry is None:
                return Neighbour(name, None, "task no longer in the project")
            data = fetch_image_bytes(entry["url"], settings, service.session, service.client, tid)
            image = decode_rgb(data)
        else:
            root = settings.base_train
            # lexically inside the set (its files may be links, as the training read them)
            path = Path(os.path.normpath(root / name)) if root is not None else None
            if path is None or not path.is_relative_to(os.path.normpath(root)):
                return Neighbour(name, None, "not under CRACKAL_BASE_TRAIN")
            image = read_rgb(path)
    except Exception as exc:
        return Neighbour(name, None, f"{type(exc).__name__}: {exc}"[:200])
    return Neighbour(name, _resize(image, _shown_size(image.shape[:2])))


def _shown_size(shape: tuple[int, int]) -> tuple[int, int]:
    h, w = shape
    scale = min(1.0, SHOWN_SIDE / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if image.shape[:2] == size:
        return image
    return np.asarray(Image.fromarray(image).resize(size[::-1], Image.BILINEAR))
