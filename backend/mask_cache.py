"""Pre-annotation masks by (model weights, image content, threshold), as brush RLE.

A re-score after new labels changes every score but no mask: masks are recomputed only
for a new model version, a new threshold or a changed image. One small `.npy` of RLE
bytes per entry, written atomically (several workers may share the folder).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from selection.atomic import atomic_write


class MaskCache:
    def __init__(self, root: Path | str, weights_sha256: str, threshold: float) -> None:
        self.folder = Path(root) / "masks" / f"{weights_sha256[:20]}-t{threshold:.4f}"

    def _path(self, image_hash: str) -> Path:
        return self.folder / image_hash[:2] / f"{image_hash}.npy"

    def has(self, image_hash: str) -> bool:
        """Whether an entry exists (without reading it)."""
        return self._path(image_hash).is_file()

    def get(self, image_hash: str) -> tuple[list[int], tuple[int, int]] | None:
        """(RLE, (height, width)) or None when absent or unreadable."""
        try:
            data = np.load(self._path(image_hash), allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if data.ndim != 1 or data.size < 2:
            return None
        h, w = int(data[0]), int(data[1])
        return data[2:].tolist(), (h, w)

    def put(self, image_hash: str, rle: list[int], shape: tuple[int, int]) -> None:
        values = np.asarray([shape[0], shape[1], *rle], dtype=np.int64)
        with atomic_write(self._path(image_hash)) as fh:
            np.save(fh, values, allow_pickle=False)
