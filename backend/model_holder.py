"""The one holder of what serving needs from the registry: a project's current version,
its feature extractor, the base training set's features (P) and, on the CPU unless
CRACKAL_ONNX=0, its onnxruntime export for masks (torch serves them when that fails, and on
a GPU), reloaded when the project's line changes and shared by `/predict` and the jobs of
one process. A few versions stay loaded (projects on different lines); a damaged version is
replaced by the registry's fallback, and the problem is kept for /health."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from backend.settings import Settings
from selection.cache import FeatureCache
from selection.embed import embed_paths
from selection.extractors import FeatureExtractor, imagenet_extractor
from selection.images import list_images
from training.model_features import extractor_from_model
from training.registry import LoadedModel, Registry

if TYPE_CHECKING:
    from training.onnx_model import OnnxRunner

log = logging.getLogger("crackal.backend")


@dataclass(frozen=True)
class Serving:
    """One consistent view: a model, its extractor, that extractor's cache and P's rows."""

    model: LoadedModel
    extractor: FeatureExtractor
    cache: FeatureCache
    base_features: np.ndarray  # (n, q); (0, 0) without CRACKAL_BASE_TRAIN
    problem: str | None = None  # set when this is a fallback for a damaged version
    onnx: OnnxRunner | None = None  # the model on onnxruntime, for masks; None: torch
    base_names: tuple[str, ...] = ()  # P's images: paths under CRACKAL_BASE_TRAIN, in row order

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def fit_key(self) -> str:
        """Names a stored distance fit: valid only for this model, extractor and P."""
        ident = f"{self.extractor.version}|{self.base_features.shape}|{self.base_features.sum()}"
        return f"{self.version}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"


class ModelHolder:
    LOADED = 3  # versions kept loaded at once

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = Registry(settings.registry)
        self._lock = threading.Lock()
        self._serving: OrderedDict[str, Serving] = OrderedDict()  # by the version wanted
        self._problems: dict[str, str] = {}

    @property
    def loaded(self) -> bool:
        return bool(self._serving)

    def problems(self) -> dict[str, str]:
        """Versions that could not be loaded, and what serves instead (never waits for a
        model being loaded)."""
        return dict(self._problems)

    def current(self, project: int | None = None) -> Serving:
        """The version serving `project` (loaded on first use and when its line changes)."""
        name = self.registry.resolve("current", project)
        with self._lock:
            serving = self._serving.get(name)
            if serving is None:
                model, problem = self.registry.load_serving(project, wanted=name)
                serving = self._load(model, problem)
                if problem:
                    self._problems[name] = problem
                self._serving[name] = serving
                while len(self._serving) > self.LOADED:
                    self._serving.popitem(last=False)
            self._serving.move_to_end(name)
            return serving

    def _load(self, model: LoadedModel, problem: str | None) -> Serving:
        s = self.settings
        device = next(model.model.parameters()).device  # the registry's choice
        log.info("loading model %s on %s", model.version, device)
        extractor = (
            extractor_from_model(model, s.feature_size)
            if s.features == "model"
            else imagenet_extractor(s.feature_size, device=device)
        )
        cache = FeatureCache(s.cache, extractor.version)
        base = np.zeros((0, 0), dtype=np.float32)
        names: tuple[str, ...] = ()
        if s.base_train is not None:
            embedded = embed_paths(list_images(s.base_train), extractor, cache, s.batch_size)
            base = embedded.features
            names = tuple(_name_under(path, s.base_train) for path in embedded.paths)
        onnx = self._onnx(model) if device.type == "cpu" else None  # a GPU runs torch
        return Serving(model, extractor, cache, base, problem, onnx, names)

    def _onnx(self, model: LoadedModel) -> OnnxRunner | None:
        """The version's onnxruntime runner (exported on first use, cached on disk), or None
        when turned off or when export or load fails: then torch serves the masks."""
        if not self.settings.onnx:
            return None
        try:
            from training.onnx_model import load_runner  # onnxruntime missing: torch serves

            return load_runner(model, self.settings.cache)
        except Exception as exc:
            log.warning(
                "model %s: onnxruntime unavailable, masks served with torch: %s",
                model.version,
                f"{type(exc).__name__}: {exc}"[:500],
            )
            return None


def _name_under(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name
