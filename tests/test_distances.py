"""I_dist / O_dist against a brute-force reference (scipy cdist row sums)."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from selection.distances import (
    chunk_rows,
    dataset_distance,
    image_to_dataset_distances,
    scaled_dataset_distances,
)


def brute(s, p):
    return cdist(s, p).sum(axis=1)


@pytest.mark.parametrize(
    ("m", "n", "z", "chunk_bytes"),
    [
        (300, 200, 25, 2**20),
        (300, 200, 25, 8),
        (1, 50, 25, 2**20),
        (40, 1, 25, 2**20),
        (1, 1, 3, 2**20),
        (257, 129, 2, 4096),
    ],
)
def test_matches_brute_force(m, n, z, chunk_bytes):
    rng = np.random.default_rng(m * 1000 + n)
    s = rng.normal(size=(m, z)) * 30 + 5
    p = rng.normal(size=(n, z)) * 30
    got = image_to_dataset_distances(s, p, chunk_bytes=chunk_bytes)
    assert got.dtype == np.float64 and got.shape == (m,)
    np.testing.assert_allclose(got, brute(s, p), rtol=1e-6)


def test_float32_input_is_accumulated_in_float64():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(100, 25)).astype(np.float32)
    p = rng.normal(size=(5000, 25)).astype(np.float32)
    ref = brute(s.astype(np.float64), p.astype(np.float64))
    np.testing.assert_allclose(image_to_dataset_distances(s, p), ref, rtol=1e-9)


def test_identical_points_are_at_distance_zero():
    p = np.array([[3.0, 4.0], [0.0, 0.0]])
    got = image_to_dataset_distances(p[:1], p)
    np.testing.assert_allclose(got, [5.0], rtol=1e-12)
    assert image_to_dataset_distances(np.zeros((1, 2)), np.zeros((1, 2)))[0] == 0.0


def test_o_dist_is_the_mean_and_scaling_divides_by_the_sum():
    assert dataset_distance(np.array([1.0, 2.0, 6.0])) == pytest.approx(3.0)
    scaled = scaled_dataset_distances({"a": 1.0, "b": 3.0})
    assert scaled == pytest.approx({"a": 0.25, "b": 0.75})
    assert scaled_dataset_distances({"a": 0.0}) == {"a": 0.0}
    with pytest.raises(ValueError):
        dataset_distance(np.array([]))


def test_chunk_size_respects_budget():
    assert chunk_rows(10_000, 32 * 2**20) * 10_000 * 8 <= 32 * 2**20
    assert chunk_rows(10**9, 1) == 1


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="dimensions differ"):
        image_to_dataset_distances(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="empty"):
        image_to_dataset_distances(np.zeros((2, 3)), np.zeros((0, 3)))
    assert image_to_dataset_distances(np.zeros((0, 3)), np.ones((2, 3))).shape == (0,)
