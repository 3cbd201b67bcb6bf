"""PCA is fitted on P u S jointly, clamped to what the data allow, and reports variance."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.decomposition import PCA

from selection.distances import image_to_dataset_distances
from selection.projection import fit_joint_pca


def test_equals_sklearn_pca_on_the_stacked_sets():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(60, 80)).astype(np.float32)
    s = rng.normal(loc=0.5, size=(40, 80)).astype(np.float32)
    proj = fit_joint_pca(p, s, 25)
    ref = PCA(n_components=25).fit_transform(np.vstack([p, s]).astype(np.float64))
    # Components are defined up to sign: compare the distances they induce.
    np.testing.assert_allclose(
        image_to_dataset_distances(proj.secondary, proj.primary),
        cdist(ref[60:], ref[:60]).sum(1),
        rtol=1e-6,
    )
    assert proj.components == 25
    assert 0 < proj.explained_variance <= 1


def test_joint_fit_differs_from_fitting_p_alone():
    rng = np.random.default_rng(1)
    p = rng.normal(size=(50, 30))
    s = rng.normal(size=(50, 30)) + np.linspace(0, 5, 30)
    joint = fit_joint_pca(p, s, 2)
    alone = PCA(2).fit(p)
    assert not np.allclose(np.abs(joint.primary), np.abs(alone.transform(p)))


@pytest.mark.parametrize(
    ("n", "m", "q", "expected"), [(1, 1, 10, 2), (3, 2, 10, 5), (50, 50, 4, 4)]
)
def test_components_are_clamped(n, m, q, expected):
    rng = np.random.default_rng(n + m)
    proj = fit_joint_pca(rng.normal(size=(n, q)), rng.normal(size=(m, q)), 25)
    assert proj.components == expected
    assert proj.primary.shape == (n, expected) and proj.secondary.shape == (m, expected)


def test_identical_rows_give_zero_variance_not_nan():
    proj = fit_joint_pca(np.ones((2, 5)), np.ones((3, 5)), 25)
    assert proj.explained_variance == 0.0
    assert np.all(proj.secondary == 0)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="feature sizes differ"):
        fit_joint_pca(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="need images"):
        fit_joint_pca(np.zeros((0, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        fit_joint_pca(np.full((2, 3), np.nan), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="component"):
        fit_joint_pca(np.zeros((2, 3)), np.zeros((2, 3)), 0)
