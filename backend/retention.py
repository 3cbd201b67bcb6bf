"""What the backend keeps on disk: the newest `CRACKAL_KEEP_VERSIONS` versions plus every
line's current one, and only the feature and mask caches of versions still kept (feature
caches go by the encoder's weights, which versions adapted with a frozen encoder share;
caches of the ImageNet extractor are kept: they belong to no version)."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import torch

from training.model import encoder_sha256
from training.model_features import ENCODER_WEIGHTS
from training.registry import Registry, RegistryError

log = logging.getLogger("crackal.retention")
# feature caches of registry versions: keyed by the whole model (before November 2026) or
# by its encoder
_MODEL_WEIGHTS = re.compile(r"crackal-model-sha256:([0-9a-f]{20})")
_ENCODER_WEIGHTS = re.compile(re.escape(ENCODER_WEIGHTS) + r"([0-9a-f]{20})")


def apply_retention(registry: Registry, cache_root: Path, keep: int) -> list[str]:
    """Prune versions and their caches; returns the versions deleted."""
    removed = registry.prune(keep)
    kept, encoders = set(), set()
    for name in registry.versions():
        try:
            kept.add(registry.meta(name)["weights_sha256"][:20])
            state = torch.load(registry.weights_path(name), map_location="cpu", weights_only=True)
            encoders.add(encoder_sha256(state)[:20])
        except (RegistryError, KeyError):
            continue
        except Exception as exc:  # damaged weights: their feature caches are dropped
            log.warning("version %s: weights unreadable for retention: %s", name, exc)
    for folder in (Path(cache_root) / "masks").glob("*-t*"):
        if folder.name.split("-t")[0] not in kept:
            shutil.rmtree(folder, ignore_errors=True)
    for stamp in (Path(cache_root) / "features").glob("*/VERSION"):
        try:
            stamped = stamp.read_text()
        except OSError:
            continue
        model, encoder = _MODEL_WEIGHTS.search(stamped), _ENCODER_WEIGHTS.search(stamped)
        if (model and model.group(1) not in kept) or (encoder and encoder.group(1) not in encoders):
            shutil.rmtree(stamp.parent, ignore_errors=True)
    if removed:
        log.info("deleted versions %s (keeping %d and every current one)", removed, keep)
    return removed
