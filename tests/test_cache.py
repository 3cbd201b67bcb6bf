"""Feature cache: keyed by content + extractor version, atomic under concurrent writers."""

import multiprocessing
import shutil

import numpy as np
import pytest

from selection.cache import FeatureCache
from selection.embed import embed_paths
from selection.images import list_images


def write_rows(root: str, version: str, seed: int) -> None:
    cache = FeatureCache(root, version)
    for i in range(200):
        # Every writer stores the same row for a key, as two processes embedding one image do.
        cache.put(f"{i:064x}", np.full(512, i, dtype=np.float32))
        got = cache.get(f"{(i * 7 + seed) % 200:064x}")
        assert got is None or (got.shape == (512,) and np.all(got == got[0]))


def test_concurrent_writers_leave_only_whole_entries(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=write_rows, args=(str(tmp_path), "v1", s)) for s in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = FeatureCache(tmp_path, "v1")
    assert len(cache) == 200
    for i in range(200):
        assert np.array_equal(cache.get(f"{i:064x}"), np.full(512, i, dtype=np.float32))
    assert not list(tmp_path.rglob("*.tmp"))


def test_damaged_entry_is_a_miss(tmp_path):
    cache = FeatureCache(tmp_path, "v1")
    cache.put("ab" * 32, np.ones(4))
    (cache.folder / "ab" / f"{'ab' * 32}.npy").write_bytes(b"garbage")
    assert cache.get("ab" * 32) is None


def test_second_run_computes_nothing_and_keys_by_content(real_subset, extractor, tmp_path):
    folder = real_subset("cfd", 6)
    cache = FeatureCache(tmp_path / "cache", extractor.version)
    first = embed_paths(list_images(folder), extractor, cache, batch_size=4)
    assert first.computed == 6 and len(cache) == 6

    renamed = tmp_path / "renamed"
    renamed.mkdir()
    for i, path in enumerate(list_images(folder)):
        shutil.copy(path, renamed / f"copy-{i}.jpg")
    second = embed_paths(list_images(renamed), extractor, cache, batch_size=4)
    assert second.computed == 0
    np.testing.assert_array_equal(second.features, first.features)

    other = FeatureCache(tmp_path / "cache", extractor.version + "|other")
    assert other.get(next(iter(cache.folder.glob("*/*.npy"))).stem) is None


def test_cache_of_another_extractor_is_refused(extractor, tmp_path):
    with pytest.raises(ValueError, match="another extractor"):
        embed_paths([], extractor, FeatureCache(tmp_path, "something else"))
