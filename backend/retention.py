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
# feature caches of registry versions: keyed by the encoder's tensors; those keyed by the
# whole model (before November 2026) no extractor reads any more
_MODEL_WEIGHTS = re.compile(r"crackal-model-sha256:[0-9a-f]{20}")
_ENCODER_WEIGHTS = re.compile(re.escape(ENCODER_WEIGHTS) + r"([0-9a-f]{20})")


def apply_retention(registry: Registry, cache_root: Path, keep: int) -> list[str]:
    """Prune versions and their caches; returns the versions deleted."""
    removed = registry.prune(keep)
    stamps = {}
    for stamp in (Path(cache_root) / "features").glob("*/VERSION"):
        try:
            stamps[stamp.parent] = stamp.read_text()
        except OSError:
            continue
    kept, encoders = set(), set()
    encoder_caches = any(_ENCODER_WEIGHTS.search(text) for text in stamps.values())
    for name in registry.versions():
        try:
            meta = registry.meta(name)
        except RegistryError:
            continue
        if isinstance(meta.get("weights_sha256"), str):
            kept.add(meta["weights_sha256"][:20])
        if not encoder_caches:
            continue
        try:
            encoders.add(_encoder_of(registry, name, meta)[:20])
        except Exception as exc:  # unreadable weights: no feature cache is kept for them
            log.warning("version %s: encoder unknown to retention: %s", name, exc)
    for folder in (Path(cache_root) / "masks").glob("*-t*"):
        if folder.name.split("-t")[0] not in kept:
            shutil.rmtree(folder, ignore_errors=True)
    for folder, text in stamps.items():
        encoder = _ENCODER_WEIGHTS.search(text)
        if _MODEL_WEIGHTS.search(text) or (encoder and encoder.group(1) not in encoders):
            shutil.rmtree(folder, ignore_errors=True)
    if removed:
        log.info("deleted versions %s (keeping %d and every current one)", removed, keep)
    return removed


def _encoder_of(registry: Registry, name: str, meta: dict) -> str:
    """The version's encoder hash: registered in its meta, or (older versions) computed
    from its weights file."""
    if isinstance(meta.get("encoder_sha256"), str):
        return meta["encoder_sha256"]
    state = torch.load(registry.weights_path(name), map_location="cpu", weights_only=True)
    return encoder_sha256(state)
