"""What the backend computes for a Label Studio project: pool scores and crack masks.

- P = the base training set (CRACKAL_BASE_TRAIN) plus every labelled task of the project;
  S = the unlabelled tasks. PCA is fitted on P u S, I_dist is min-max scaled over S, and a
  task's prediction score is 1 - scaled I_dist (farthest = lowest = served first under
  Label Studio's uncertainty sampling). Labelled tasks score 1.
- Masks come from the registry's current version, thresholded at its stored ODS threshold.
Features are cached by image content and extractor version, so re-scoring a project only
embeds images it has not seen; image bytes of a URL are remembered by content hash.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import requests
from PIL import Image

from backend.brush import annotation_mask, mask_result
from backend.image_source import ImageFetchError, fetch_image_bytes
from backend.label_config import BrushTarget
from backend.settings import Settings
from selection.cache import FeatureCache
from selection.embed import embed_blobs, embed_paths
from selection.extractors import FeatureExtractor, imagenet_extractor
from selection.images import ImageReadError, decode_rgb, list_images
from selection.scoring import score_set
from training.model_features import extractor_from_model
from training.predict import predict_probs
from training.registry import LoadedModel, Registry

log = logging.getLogger("crackal.backend")


def is_labelled(task: dict[str, Any]) -> bool:
    """A task with at least one annotation that was not cancelled (skipped)."""
    return any(not a.get("was_cancelled") for a in task.get("annotations") or [])


def latest_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    done = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    return max(done, key=lambda a: (a.get("updated_at") or "", a.get("id", 0))) if done else None


@dataclass
class PoolScores:
    """Scores of one project's tasks under one model version."""

    model_version: str
    scores: dict[int, float]  # task id -> prediction score in [0, 1]
    i_dist: dict[int, float]  # unlabelled task id -> I_dist
    errors: dict[int, str] = field(default_factory=dict)  # task id -> why it has no score
    labelled: int = 0
    base_images: int = 0


class Scorer:
    """Holds the current model and computes scores and predictions for tasks."""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        self.settings = settings
        self.registry = Registry(settings.registry)
        self.session = session or requests.Session()
        self._lock = threading.RLock()
        self._model: LoadedModel | None = None
        self._extractor: FeatureExtractor | None = None

    # -- model ----------------------------------------------------------------------------
    def model(self) -> LoadedModel:
        """The registry's current version, reloaded when `current` changes."""
        with self._lock:
            name = self.registry.resolve("current")
            if self._model is None or self._model.version != name:
                log.info("loading model %s", name)
                self._model = self.registry.load(name)
                self._extractor = None
            return self._model

    def extractor(self) -> FeatureExtractor:
        with self._lock:
            loaded = self.model()
            if self._extractor is None:
                s = self.settings
                self._extractor = (
                    extractor_from_model(loaded, s.feature_size)
                    if s.features == "model"
                    else imagenet_extractor(s.feature_size)
                )
            return self._extractor

    # -- images ---------------------------------------------------------------------------
    def fetch(self, task: dict[str, Any], target: BrushTarget) -> bytes:
        """A task's image bytes; ImageFetchError / ImageReadError with the reason."""
        url = (task.get("data") or {}).get(target.image_key)
        if url is None:
            raise ImageFetchError(f"task data has no {target.image_key!r} key")
        data = fetch_image_bytes(url, self.settings, self.session)
        try:
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size
        except Exception as exc:  # any decoder failure is a bad image
            raise ImageReadError(url[:80], "not a recognised image format") from exc
        if w * h > self.settings.max_image_pixels:
            raise ImageFetchError(f"image is {w}x{h}, above CRACKAL_MAX_IMAGE_PIXELS")
        return data

    def fetch_all(
        self, tasks: Sequence[dict[str, Any]], target: BrushTarget
    ) -> tuple[dict[int, bytes], dict[int, str]]:
        images, errors = {}, {}
        for task in tasks:
            try:
                images[task["id"]] = self.fetch(task, target)
            except (ImageFetchError, ImageReadError) as exc:
                errors[task["id"]] = str(exc)
                log.warning("task %s: no image: %s", task.get("id"), exc)
        return images, errors

    # -- scores ---------------------------------------------------------------------------
    def base_features(self, extractor: FeatureExtractor, cache: FeatureCache) -> np.ndarray:
        if self.settings.base_train is None:
            return np.zeros((0, 0), dtype=np.float32)
        return embed_paths(
            list_images(self.settings.base_train), extractor, cache, self.settings.batch_size
        ).features

    def score_pool(
        self,
        tasks: Sequence[dict[str, Any]],
        target: BrushTarget,
        images: dict[int, bytes] | None = None,
    ) -> PoolScores:
        """Score every task of a project: the whole pool defines PCA and the scaling."""
        with self._lock:
            loaded = self.model()
            extractor = self.extractor()
            cache = FeatureCache(self.settings.cache, extractor.version)
            if images is None:
                images, errors = self.fetch_all(tasks, target)
            else:
                errors = {t["id"]: "image not fetched" for t in tasks if t["id"] not in images}
            ids = [t["id"] for t in tasks if t["id"] in images]
            rows, skipped, _ = embed_blobs(
                ((str(i), images[i]) for i in ids),
                len(ids),
                extractor,
                cache,
                self.settings.batch_size,
            )
            for err in skipped:
                errors[int(err.path)] = err.reason
            labelled = {t["id"] for t in tasks if is_labelled(t)}
            feats = {ids[k]: row for k, row in rows.items()}
            base = self.base_features(extractor, cache)
            p_rows = [feats[i] for i in feats if i in labelled]
            s_ids = [i for i in feats if i not in labelled]
            primary = np.vstack([base, *p_rows]) if base.size else np.array(p_rows)
            scores = {i: 1.0 for i in feats if i in labelled}
            i_dist: dict[int, float] = {}
            if s_ids and len(primary):
                result = score_set(
                    "pool",
                    [str(i) for i in s_ids],
                    np.stack([feats[i] for i in s_ids]),
                    primary,
                    self.settings.components,
                    self.settings.band,
                )
                for i, d, x in zip(s_ids, result.i_dist, result.scaled, strict=True):
                    i_dist[i] = float(d)
                    scores[i] = float(1.0 - x)
            elif s_ids:
                errors.update({i: "no training images to compare with" for i in s_ids})
            return PoolScores(loaded.version, scores, i_dist, errors, len(p_rows), len(base))

    # -- masks ----------------------------------------------------------------------------
    def predictions(
        self,
        tasks: Sequence[dict[str, Any]],
        target: BrushTarget,
        pool: PoolScores,
        images: dict[int, bytes],
    ) -> list[dict[str, Any]]:
        """One prediction per task that has an image and a score (others are skipped)."""
        out = []
        with self._lock:
            loaded = self.model()
            for task in tasks:
                tid = task["id"]
                if tid not in images or tid not in pool.scores:
                    continue
                try:
                    rgb = decode_rgb(images[tid], f"task {tid}")
                except ImageReadError as exc:
                    pool.errors[tid] = exc.reason
                    continue
                probs = predict_probs(loaded.model, rgb, loaded.encoder)
                mask = probs > loaded.threshold
                out.append(
                    {
                        "task": tid,
                        "model_version": loaded.version,
                        "score": pool.scores[tid],
                        "result": [mask_result(mask, target)],
                    }
                )
        return out

    def labelled_mask(
        self, task: dict[str, Any], target: BrushTarget, image: bytes
    ) -> np.ndarray | None:
        """The crack mask of a labelled task's latest annotation, or None if unlabelled."""
        annotation = latest_annotation(task)
        if annotation is None:
            return None
        shape = decode_rgb(image, f"task {task['id']}").shape[:2]
        return annotation_mask(annotation.get("result") or [], target, shape)
