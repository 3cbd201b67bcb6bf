"""What the backend keeps on disk: the newest `CRACKAL_KEEP_VERSIONS` versions plus every
line's current one, and only the feature and mask caches of versions still kept (caches
of the ImageNet extractor are kept: they belong to no version)."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from training.registry import Registry, RegistryError

log = logging.getLogger("crackal.retention")
_MODEL_WEIGHTS = re.compile(r"crackal-model-sha256:([0-9a-f]{20})")


def apply_retention(registry: Registry, cache_root: Path, keep: int) -> list[str]:
    """Prune versions and their caches; returns the versions deleted."""
    removed = registry.prune(keep)
    kept = set()
    for name in registry.versions():
        try:
            kept.add(registry.meta(name)["weights_sha256"][:20])
        except (RegistryError, KeyError):
            continue
    for folder in (Path(cache_root) / "masks").glob("*-t*"):
        if folder.name.split("-t")[0] not in kept:
            shutil.rmtree(folder, ignore_errors=True)
    for stamp in (Path(cache_root) / "features").glob("*/VERSION"):
        try:
            match = _MODEL_WEIGHTS.search(stamp.read_text())
        except OSError:
            continue
        if match and match.group(1) not in kept:
            shutil.rmtree(stamp.parent, ignore_errors=True)
    if removed:
        log.info("deleted versions %s (keeping %d and every current one)", removed, keep)
    return removed
