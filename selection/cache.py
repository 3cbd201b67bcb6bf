"""On-disk feature cache keyed by image content hash and extractor version.

Layout: `<root>/features/<sha256(version)[:16]>/<hash[:2]>/<hash>.npy`, with the full version string
in `VERSION` beside the shards. Each entry is written to a temporary file in the same folder
and renamed into place, so concurrent writers (several processes embedding the same images)
never leave a torn file: the last rename wins and both wrote the same row.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from selection.atomic import atomic_write


def default_cache_dir() -> Path:
    """`$CRACKAL_CACHE`, else `$XDG_CACHE_HOME/crackal`, else `~/.cache/crackal`."""
    if env := os.environ.get("CRACKAL_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "crackal"


class FeatureCache:
    """Feature rows of one extractor version, one `.npy` file per image content hash."""

    def __init__(self, root: Path | str, extractor_version: str) -> None:
        self.extractor_version = extractor_version
        key = hashlib.sha256(extractor_version.encode()).hexdigest()[:16]
        self.folder = Path(root) / "features" / key
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = self.folder / "VERSION"
        if not stamp.exists():
            with atomic_write(stamp, "w") as fh:
                fh.write(extractor_version + "\n")

    def _path(self, image_hash: str) -> Path:
        return self.folder / image_hash[:2] / f"{image_hash}.npy"

    def get(self, image_hash: str) -> np.ndarray | None:
        """The cached row, or None when absent or unreadable (a damaged entry is a miss)."""
        path = self._path(image_hash)
        try:
            row = np.load(path, allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError, EOFError):
            return None
        return row if row.ndim == 1 else None

    def put(self, image_hash: str, row: np.ndarray) -> None:
        """Store one feature row atomically."""
        with atomic_write(self._path(image_hash)) as fh:
            np.save(fh, np.asarray(row, dtype=np.float32), allow_pickle=False)

    def __len__(self) -> int:
        return sum(1 for _ in self.folder.glob("*/*.npy"))
