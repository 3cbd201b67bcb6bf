"""ODS / OIS / AP on hand-made cases with known counts, and against a naive reference."""

import numpy as np
import pytest

from training.metrics import THRESHOLDS, Counts, image_counts, scores


def naive_counts(prob, gt):
    """DeepSegmentor's loop, written plainly: pred = prob > t for each threshold."""
    out = []
    for t in THRESHOLDS:
        pred = prob > t
        out.append(((pred & gt).sum(), (pred & ~gt).sum(), (~pred & gt).sum()))
    return np.array(out)


def test_counts_of_a_hand_made_image():
    prob = np.array([[0.875, 0.375], [0.0625, 0.0]], dtype=np.float32)
    gt = np.array([[1, 0], [1, 0]], dtype=bool)
    c = image_counts(prob, gt)
    # t = 0.00: every pixel but the 0.0 one is predicted: tp 2, fp 1, fn 0.
    assert (c.tp[0, 0], c.fp[0, 0], c.fn[0, 0]) == (2, 1, 0)
    # t = 0.06: 0.0625 still counts; t = 0.07: tp 1 (0.875), fp 1 (0.375), fn 1.
    assert (c.tp[0, 6], c.fp[0, 6], c.fn[0, 6]) == (2, 1, 0)
    assert (c.tp[0, 7], c.fp[0, 7], c.fn[0, 7]) == (1, 1, 1)
    # t = 0.37 is below 0.375; from t = 0.38 on only 0.875 remains.
    assert (c.tp[0, 37], c.fp[0, 37]) == (1, 1)
    assert (c.tp[0, 38], c.fp[0, 38], c.fn[0, 38]) == (1, 0, 1)
    assert (c.tp[0, 87], c.tp[0, 88]) == (1, 0)
    assert (c.tp[0, 99], c.fp[0, 99], c.fn[0, 99]) == (0, 0, 2)
    assert np.array_equal(c.found, c.tp)


def test_counts_equal_the_naive_loop_on_random_maps():
    rng = np.random.default_rng(0)
    for _ in range(5):
        prob = rng.random((37, 41)).astype(np.float32)
        prob[rng.random(prob.shape) < 0.1] = np.round(prob[:5, :5].mean(), 2)  # exact ties
        gt = rng.random((37, 41)) < 0.2
        c = image_counts(prob, gt)
        ref = naive_counts(prob, gt)
        assert np.array_equal(np.stack([c.tp[0], c.fp[0], c.fn[0]], 1), ref)


def test_ods_pools_counts_over_images_and_ois_is_per_image():
    gt1 = np.zeros((4, 4), bool)
    gt1[0] = True
    gt2 = np.zeros((4, 4), bool)
    gt2[:, 0] = True
    p1 = np.where(gt1, 0.8, 0.1).astype(np.float32)  # perfect above 0.1
    p2 = np.where(gt2, 0.3, 0.2).astype(np.float32)  # perfect between 0.2 and 0.3
    s = scores(Counts.stack([image_counts(p1, gt1), image_counts(p2, gt2)]))
    # One threshold in [0.2, 0.3) separates both images perfectly.
    assert s.ods == pytest.approx(1.0) and 0.2 <= s.ods_threshold < 0.3
    assert s.ois == pytest.approx(1.0)
    assert s.per_image_f.tolist() == pytest.approx([1.0, 1.0])
    assert s.ap == pytest.approx(1.0)
    # Pooled: at 0.5 image 1 is perfect, image 2 has nothing: P = 1, R = 4/8.
    assert s.precision[50] == 1.0 and s.recall[50] == pytest.approx(0.5)
    assert s.f[50] == pytest.approx(2 / 3)


def test_degenerate_images():
    gt = np.zeros((5, 5), bool)
    empty = scores(image_counts(np.zeros((5, 5), np.float32), gt))
    assert empty.per_image_f.tolist() == [1.0]  # crack-free and predicted crack-free
    noisy = scores(image_counts(np.ones((5, 5), np.float32), gt))
    assert noisy.per_image_f.tolist() == [0.0]  # any false positive on a crack-free image
    gt[2] = True
    missed = scores(image_counts(np.zeros((5, 5), np.float32), gt))
    assert missed.ods == 0.0


def test_tolerance_forgives_a_one_pixel_shift_but_exact_does_not():
    gt = np.zeros((20, 20), bool)
    gt[10, 2:18] = True
    prob = np.zeros((20, 20), np.float32)
    prob[11, 2:18] = 0.9  # one pixel below the true line
    assert scores(image_counts(prob, gt)).ods == 0.0
    tol = scores(image_counts(prob, gt, tolerance=2))
    assert tol.ods == pytest.approx(1.0)
    prob[15, 2:18] = 0.9  # a second line 5 px away: false positives even with tolerance
    assert scores(image_counts(prob, gt, tolerance=2)).ods == pytest.approx(2 / 3)


def test_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ"):
        image_counts(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError):
        Counts.stack([])


def test_pooled_f_is_the_ods_or_the_f_at_a_threshold_on_the_grid():
    from training.metrics import pooled_f

    truth = np.zeros((20, 20), bool)
    truth[:, 8:12] = True
    counts = Counts.stack([image_counts(np.where(truth, 0.9, 0.5), truth)] * 2)
    assert pooled_f(counts) == scores(counts).ods == 1.0
    assert pooled_f(counts, 0.2) == pytest.approx(2 * 160 / (2 * 160 + 640))  # all marked
