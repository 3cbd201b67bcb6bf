"""The stored distance fit (what /predict scores with between scoring jobs), the min-max
tolerance, and full-resolution tiled inference, on real images."""

from __future__ import annotations

import numpy as np
import pytest

from backend.pool_store import PoolStore
from selection.distance_fit import DistanceFit
from selection.embed import embed_paths
from selection.images import read_rgb
from selection.ranking import min_max_scale
from selection.scoring import score_set
from training.predict import predict_probs


@pytest.fixture(scope="module")
def features(crack_data, extractor):
    train = sorted((crack_data / "deepcrack" / "train" / "images").iterdir())[::13]
    pool = sorted((crack_data / "cfd" / "images").iterdir())[::6]
    pool += sorted((crack_data / "bsds500" / "images").iterdir())[::20]
    return embed_paths(train, extractor).features, embed_paths(pool, extractor).features


def test_the_stored_fit_reproduces_the_methods_scores_and_clips_new_images(features, tmp_path):
    p, s = features
    fit, i_dist = DistanceFit.fit(p, s[:-3])
    reference = score_set("pool", [str(i) for i in range(len(s) - 3)], s[:-3], p)
    np.testing.assert_allclose(i_dist, reference.i_dist, rtol=1e-10)
    np.testing.assert_allclose(fit.i_dist(s[:-3]), reference.i_dist, rtol=1e-8)
    np.testing.assert_allclose(fit.scaled(fit.i_dist(s[:-3])), reference.scaled, atol=1e-8)
    store = PoolStore(tmp_path, 7)
    store.save_fit("v1", fit)
    loaded = store.load_fit("v1")
    later = loaded.scaled(loaded.i_dist(s[-3:]))  # images the fit never saw
    assert ((later >= 0) & (later <= 1)).all()
    assert store.load_fit("v2") is None


def test_duplicated_images_scale_to_zero_not_to_round_off(features):
    p, s = features
    twins = np.repeat(s[:1], 5, axis=0)  # one image uploaded five times
    i_dist = score_set("pool", list("abcde"), twins, p).i_dist
    assert np.ptp(i_dist) < 1e-9 * i_dist.max()  # equal up to round-off, maybe not exactly
    assert (min_max_scale(i_dist) == 0).all()
    assert (min_max_scale(i_dist + np.arange(5)) > 0).sum() == 4  # real spreads still scale


def test_tiled_inference_covers_every_pixel_once_blended(crack_data):
    """With a per-pixel model (a 1 x 1 convolution), tiles of 256 px with 64 px overlap over
    a real 480 x 320 photo must give exactly the one-pass map: every pixel predicted, the
    blend weights summing to one, at full resolution."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 1, 1)
    image = read_rgb(sorted((crack_data / "cfd" / "images").iterdir())[0])
    whole = predict_probs(model, image, "tu-tf_efficientnet_lite0")
    tiled = predict_probs(model, image, "tu-tf_efficientnet_lite0", tile=256, overlap=64)
    assert tiled.shape == whole.shape == image.shape[:2]
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    quick = predict_probs(model, image, "tu-tf_efficientnet_lite0", max_side=120)
    assert quick.shape == image.shape[:2]
    assert np.abs(quick - whole).max() > 1e-3  # the downscaled look is another map


def test_device_settings_refuse_nonsense(monkeypatch):
    from training.device import resolve_device

    assert resolve_device("cpu").type == "cpu"
    monkeypatch.setenv("CRACKAL_DEVICE", "gpu-please")
    with pytest.raises(ValueError, match="not a device"):
        resolve_device()


def test_shard_indexes_merge_a_damaged_one_costs_only_its_tasks_and_clear(tmp_path):
    store = PoolStore(tmp_path, 3)
    store.save_shard_index("r1", 1, {1: {"url": "a", "sha": "x"}, 2: {"url": "b", "sha": "y"}})
    store.save_shard_index("r1", 2, {3: {"url": "c", "sha": "z"}})
    store.save_shard_index("r0", 1, {4: {"url": "old", "sha": "w"}})  # another run's
    pages = store.folder / "shards" / "r1"
    (pages / "page-3.json").write_text('{"4": {"url": "d", "sh')  # torn
    (pages / "page-4.json").write_text('["not", "an", "index"]')
    (pages / "page-5.json").write_text('{"5": {"url": "e"}}')  # no hash
    (pages / "page-6.json").write_text('{"six": {"url": "f", "sha": "v"}}')  # no task id
    assert store.load_shard_indexes("r1") == {
        1: {"url": "a", "sha": "x"},
        2: {"url": "b", "sha": "y"},
        3: {"url": "c", "sha": "z"},
    }
    store.clear_shard_indexes()
    assert store.load_shard_indexes("r1") == store.load_shard_indexes("r0") == {}
    assert PoolStore(tmp_path, 4).load_shard_indexes("r1") == {}  # no folder at all


@pytest.mark.parametrize(
    "text",
    ["", "{", "null", "{}", '["v1", "{}"]', '["v1", "{}", 3]', '{"version": "v1"}', "[1, 2, 3]"],
)
def test_a_damaged_scoring_marker_reads_as_not_scored(tmp_path, text):
    store = PoolStore(tmp_path, 5)
    store.save_scored(("v2", '{"strategy": "band"}', "2026-11-27T10:00:00Z"))
    assert store.load_scored() == ("v2", '{"strategy": "band"}', "2026-11-27T10:00:00Z")
    (store.folder / "scored.json").write_text(text)
    assert store.load_scored() is None  # scored again, never wrongly skipped
