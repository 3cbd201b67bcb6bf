"""The queue's order under each strategy the backend offers (CRACKAL_STRATEGY), on real
images: DeepCrack as the training set, a pool of CFD, Crack500 and BSDS500 photos."""

from __future__ import annotations

import numpy as np
import pytest

from backend.settings import Settings
from selection.distances import image_to_dataset_distances
from selection.embed import embed_paths
from selection.projection import fit_joint_pca
from selection.queue_order import queue_scores
from selection.ranking import in_band, min_max_scale
from selection.strategies import Strategy, k_center_greedy

BAND = (0.6, 1.0)


@pytest.fixture(scope="module")
def features(crack_data, extractor):
    def rows(name, count):
        paths = sorted((crack_data / name / "images").iterdir())[:count]
        return embed_paths(paths, extractor).features.astype(np.float64)

    primary = rows("deepcrack/train", 10)
    pool = np.concatenate([rows("cfd", 6), rows("crack500", 6), rows("bsds500", 6)])
    projection = fit_joint_pca(primary, pool, 10)
    i_dist = image_to_dataset_distances(projection.secondary, projection.primary)
    return primary, pool, min_max_scale(i_dist), projection


def scores(strategy, features, seed=0):
    primary, pool, scaled, _ = features
    return queue_scores(strategy, primary, pool, scaled, BAND, 10, seed)


def served(values):
    return list(np.argsort(values, kind="stable"))


def test_farthest_scores_are_one_minus_the_scaled_distance(features):
    scaled = features[2]
    assert np.allclose(scores(Strategy.FARTHEST, features), 1 - scaled)
    assert served(scores(Strategy.FARTHEST, features))[0] == int(np.argmax(scaled))


@pytest.mark.parametrize("strategy", ["band", "band-kcenter", "kcenter", "random"])
def test_every_order_is_a_permutation_of_ranks(features, strategy):
    values = scores(Strategy(strategy), features)
    m = len(features[1])
    assert np.allclose(np.sort(values), np.arange(m) / (m - 1))


def test_band_orders_serve_the_band_first_and_the_seed_matters(features):
    band = in_band(features[2], BAND)
    k = int(band.sum())
    assert 2 <= k < len(band)  # the real pool has images inside and outside the band
    for strategy in (Strategy.BAND, Strategy.BAND_KCENTER):
        first = served(scores(strategy, features))[:k]
        assert band[first].all(), strategy
    orders = {tuple(served(scores(Strategy.BAND, features, seed))[:k]) for seed in range(8)}
    assert len(orders) > 1


def test_band_kcenter_follows_k_center_inside_the_band(features):
    projection = features[3]
    band = np.flatnonzero(in_band(features[2], BAND))
    expected = [int(band[i]) for i in k_center_greedy(
        projection.secondary[band], projection.primary, len(band)
    )]  # fmt: skip
    assert served(scores(Strategy.BAND_KCENTER, features))[: len(band)] == expected


def test_a_long_k_center_order_continues_by_distance_after_its_greedy_picks(features):
    _, _, _, projection = features
    pool, primary = projection.secondary, projection.primary
    m = len(pool)
    exact = k_center_greedy(pool, primary, m)
    capped = k_center_greedy(pool, primary, m, greedy=5)
    assert sorted(capped) == list(range(m)) and capped[:5] == exact[:5]
    centres = np.concatenate([primary, pool[capped[:5]]])
    nearest = np.linalg.norm(pool[capped[5:], None] - centres[None], axis=2).min(axis=1)
    assert np.all(np.diff(nearest) <= 1e-12)  # the rest: farthest from P and the picks first
    assert capped != exact  # the real pool's greedy order differs from the frozen one


def test_strategy_and_band_settings_are_checked():
    s = Settings.from_env({"CRACKAL_STRATEGY": "band-kcenter", "CRACKAL_BAND": "0.5,0.9"})
    assert s.strategy is Strategy.BAND_KCENTER and s.band == (0.5, 0.9)
    assert Settings.from_env({}).strategy is Strategy.KCENTER  # the campaign's pick
    for env, message in (
        ({"CRACKAL_STRATEGY": "uncertainty"}, "CRACKAL_STRATEGY must be one of"),
        ({"CRACKAL_BAND": "0.9,0.2"}, "low < high"),
        ({"CRACKAL_BAND": "most"}, "low,high"),
    ):
        with pytest.raises(ValueError, match=message):
            Settings.from_env(env)
