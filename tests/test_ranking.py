"""Min-max scaling, the candidate band, top-k, sorted parts and the moving average."""

import numpy as np
import pytest

from selection.ranking import (
    farthest_first,
    in_band,
    min_max_scale,
    moving_average,
    ranks,
    smoothing_window,
    sorted_parts,
    top_k,
)


def test_min_max_scale():
    np.testing.assert_allclose(min_max_scale(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])
    assert min_max_scale(np.array([7.0])).tolist() == [0.0]
    assert min_max_scale(np.array([5.0, 5.0, 5.0])).tolist() == [0.0, 0.0, 0.0]
    assert min_max_scale(np.array([])).size == 0
    with pytest.raises(ValueError):
        min_max_scale(np.array([1.0, np.nan]))


def test_band_is_closed_and_validated():
    scaled = np.array([0.0, 0.59, 0.6, 0.8, 1.0])
    assert in_band(scaled).tolist() == [False, False, True, True, True]
    assert in_band(scaled, (0.0, 0.6)).tolist() == [True, True, True, False, False]
    with pytest.raises(ValueError):
        in_band(scaled, (0.7, 0.2))


def test_order_ranks_and_top_k():
    d = np.array([3.0, 9.0, 1.0, 9.0, 5.0])
    assert farthest_first(d).tolist() == [1, 3, 4, 0, 2]
    assert ranks(d).tolist() == [4, 1, 5, 2, 3]
    assert top_k(d, 2).tolist() == [1, 3]
    assert top_k(d, 10).tolist() == [1, 3, 4, 0, 2]
    band = in_band(min_max_scale(d))
    assert top_k(d, 10, band).tolist() == [1, 3]
    assert top_k(d, 0).size == 0


def test_sorted_parts_split_by_distance():
    d = np.array([10.0, 1.0, 7.0, 3.0, 8.0, 2.0])
    halves = sorted_parts(d, 2)
    assert [sorted(p.indices.tolist()) for p in halves] == [[1, 3, 5], [0, 2, 4]]
    assert halves[0].mean == pytest.approx(2.0)
    assert halves[1].std == pytest.approx(np.std([10.0, 7.0, 8.0]))
    thirds = sorted_parts(d, 3, f_score=lambda idx: float(len(idx)))
    assert [p.f_score for p in thirds] == [2.0, 2.0, 2.0]
    assert thirds[0].mean < thirds[1].mean < thirds[2].mean
    with pytest.raises(ValueError):
        sorted_parts(d[:2], 3)


def test_moving_average_matches_convolution():
    x = np.random.default_rng(0).random(50)
    np.testing.assert_allclose(moving_average(x, 5), np.convolve(x, np.ones(5) / 5, "valid"))
    assert moving_average(x, 100).tolist() == pytest.approx([x.mean()])
    assert moving_average(x, 0).tolist() == pytest.approx(x.tolist())
    assert smoothing_window(118) == 11 and smoothing_window(3) == 1
