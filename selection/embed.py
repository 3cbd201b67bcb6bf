"""Turning a list of image files into feature rows, through the cache, in batches."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from selection.cache import FeatureCache
from selection.extractors import FeatureExtractor
from selection.images import ImageReadError, content_hash, decode_rgb


@dataclass
class EmbeddedSet:
    """Feature rows of the images that could be read, and the ones that could not."""

    paths: list[Path]
    features: np.ndarray  # (len(paths), dim) float32
    skipped: list[ImageReadError] = field(default_factory=list)
    computed: int = 0  # rows computed now (the rest came from the cache)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.paths]


def embed_paths(
    paths: Sequence[Path | str],
    extractor: FeatureExtractor,
    cache: FeatureCache | None = None,
    batch_size: int = 16,
    desc: str | None = None,
) -> EmbeddedSet:
    """Feature rows for `paths`, in order, skipping (and reporting) unreadable files.

    Rows found in `cache` are not recomputed; new rows are added to it.
    """
    paths = [Path(p) for p in paths]

    def read(path: Path) -> bytes | ImageReadError:
        try:
            return path.read_bytes()
        except OSError as exc:
            return ImageReadError(path, f"cannot read file ({exc.strerror or exc})")

    rows, skipped, computed = embed_blobs(
        ((str(p), read(p)) for p in paths), len(paths), extractor, cache, batch_size, desc
    )
    kept = sorted(rows)
    features = (
        np.stack([rows[i] for i in kept]).astype(np.float32, copy=False)
        if kept
        else np.zeros((0, 0), dtype=np.float32)
    )
    return EmbeddedSet([paths[i] for i in kept], features, skipped, computed)


def embed_blobs(
    blobs: Iterable[tuple[str, bytes | ImageReadError]],
    total: int,
    extractor: FeatureExtractor,
    cache: FeatureCache | None = None,
    batch_size: int = 16,
    desc: str | None = None,
) -> tuple[dict[int, np.ndarray], list[ImageReadError], int]:
    """Rows for encoded images given as (name, bytes) in order; a blob that is already an
    ImageReadError is reported as skipped. Returns ({position: row}, skipped, computed)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if cache is not None and cache.extractor_version != extractor.version:
        raise ValueError("cache belongs to another extractor version")
    rows: dict[int, np.ndarray] = {}
    skipped: list[ImageReadError] = []
    pending: list[tuple[int, str, np.ndarray]] = []
    computed = 0
    bar = tqdm(total=total, desc=desc, unit="img", disable=desc is None)

    def flush() -> None:
        nonlocal computed
        if not pending:
            return
        feats = extractor([image for _, _, image in pending])
        for (index, digest, _), row in zip(pending, feats, strict=True):
            rows[index] = row
            if cache is not None:
                cache.put(digest, row)
        computed += len(pending)
        bar.update(len(pending))
        pending.clear()

    for index, (name, data) in enumerate(blobs):
        if isinstance(data, ImageReadError):
            skipped.append(data)
            bar.update()
            continue
        digest = content_hash(data)
        row = cache.get(digest) if cache is not None else None
        if row is not None:
            rows[index] = row
            bar.update()
            continue
        try:
            pending.append((index, digest, extractor.shrink(decode_rgb(data, name))))
        except ImageReadError as exc:
            skipped.append(exc)
            bar.update()
            continue
        if len(pending) >= batch_size:
            flush()
    flush()
    bar.close()
    return rows, skipped, computed
