"""The one holder of what serving needs from the registry: the current version, its
feature extractor and the base training set's features (P), reloaded when `CURRENT`
changes and shared by `/predict` and the jobs of one process."""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass

import numpy as np

from backend.settings import Settings
from selection.cache import FeatureCache
from selection.embed import embed_paths
from selection.extractors import FeatureExtractor, imagenet_extractor
from selection.images import list_images
from training.model_features import extractor_from_model
from training.registry import LoadedModel, Registry

log = logging.getLogger("crackal.backend")


@dataclass(frozen=True)
class Serving:
    """One consistent view: a model, its extractor, that extractor's cache and P's rows."""

    model: LoadedModel
    extractor: FeatureExtractor
    cache: FeatureCache
    base_features: np.ndarray  # (n, q); (0, 0) without CRACKAL_BASE_TRAIN

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def fit_key(self) -> str:
        """Names a stored distance fit: valid only for this model, extractor and P."""
        ident = f"{self.extractor.version}|{self.base_features.shape}|{self.base_features.sum()}"
        return f"{self.version}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"


class ModelHolder:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = Registry(settings.registry)
        self._lock = threading.Lock()
        self._serving: Serving | None = None

    @property
    def loaded(self) -> bool:
        return self._serving is not None

    def current(self) -> Serving:
        """The registry's current version (loaded on first use and when CURRENT changes)."""
        name = self.registry.resolve("current")
        with self._lock:
            if self._serving is None or self._serving.version != name:
                self._serving = self._load(name)
            return self._serving

    def _load(self, name: str) -> Serving:
        s = self.settings
        log.info("loading model %s", name)
        model = self.registry.load(name)
        extractor = (
            extractor_from_model(model, s.feature_size)
            if s.features == "model"
            else imagenet_extractor(s.feature_size)
        )
        cache = FeatureCache(s.cache, extractor.version)
        base = np.zeros((0, 0), dtype=np.float32)
        if s.base_train is not None:
            base = embed_paths(list_images(s.base_train), extractor, cache, s.batch_size).features
        return Serving(model, extractor, cache, base)
