"""A project's labels move its threshold part of the way, and only when the move wins
leave-one-out (training.threshold_choice)."""

import numpy as np
import pytest

from training.metrics import Counts, image_counts
from training.threshold_choice import PRIOR_LABELS, choose_threshold, moved_threshold


def _photo(crack_prob: float, background_prob: float) -> Counts:
    """A 20 x 20 image, a 4-pixel-wide crack the model scores `crack_prob`, the rest
    `background_prob`: its best thresholds lie in [background_prob, crack_prob)."""
    truth = np.zeros((20, 20), bool)
    truth[:, 8:12] = True
    return image_counts(np.where(truth, crack_prob, background_prob), truth)


def _ramp_photo(crack_prob: float, top: float) -> Counts:
    """The crack as above; the background scored evenly over [0, top): every step of the
    threshold up to `top` drops false positives, so F rises all the way."""
    truth = np.zeros((20, 20), bool)
    truth[:, 8:12] = True
    probs = np.zeros((20, 20))
    probs[~truth] = np.linspace(0.0, top, int((~truth).sum()), endpoint=False)
    probs[truth] = crack_prob
    return image_counts(probs, truth)


def _odds(p: float) -> float:
    return float(np.log(p / (1 - p)))


def test_the_move_is_a_weighted_mean_in_log_odds():
    own, refit = 0.19, 0.98
    for labels in (1, 3, 7, 30):
        share = labels / (labels + PRIOR_LABELS)
        expected = 1 / (1 + np.exp(-((1 - share) * _odds(own) + share * _odds(refit))))
        assert moved_threshold(refit, own, labels) == pytest.approx(expected, abs=0.005)
    steps = [moved_threshold(refit, own, n) for n in (1, 3, 7, 30, 1000)]
    assert steps == sorted(steps) and own < steps[0] and steps[-1] == refit
    assert moved_threshold(refit, own, 3, prior=0) == refit  # session 14's unmoved refit
    assert moved_threshold(0.0, own, 30) == own  # every pixel is never served


def test_labels_that_agree_on_a_threshold_move_it_part_of_the_way():
    counts = Counts.stack([_ramp_photo(0.95, 0.9)] * 3)
    choice = choose_threshold(counts, version_threshold=0.2)
    assert choice.refit == pytest.approx(0.9, abs=0.011)
    assert choice.threshold == choice.moved == moved_threshold(choice.refit, 0.2, 3)
    assert 0.2 < choice.threshold < choice.refit and "3/10 of the way" in choice.reason
    assert choice.leave_one_out_f > choice.version_f


def test_three_labels_that_want_an_extreme_threshold_move_it_3_tenths_of_the_way():
    # the GAPs384 walk-through: the queue's 3 farthest photos all wanted 0.98 against 0.19,
    # and the unmoved refit took F on the other 293 photos from 0.20 to 0.04
    counts = Counts.stack([_ramp_photo(0.99, 0.98)] * 3)
    choice = choose_threshold(counts, version_threshold=0.19)
    assert choice.refit >= 0.97
    assert choice.threshold == moved_threshold(choice.refit, 0.19, 3) < 0.6
    unmoved = choose_threshold(counts, version_threshold=0.19, prior=0)  # session 14's rule
    assert unmoved.threshold == unmoved.refit == choice.refit


def test_leave_one_out_scores_each_label_at_the_moved_threshold():
    # each photo: a crack and a band of background scored 0.6. Fitted on the two photos
    # whose crack scores 0.9, the refit is 0.6, which drops the third photo's crack (0.45);
    # moved 2/9 of the way from 0.2 (to 0.27) it keeps it. Held out, that photo scores 0
    # under the unmoved rule and as at the version's own under the moved one.
    truth = np.zeros((20, 20), bool)
    truth[:, 8:12] = True

    def photo(crack: float) -> Counts:
        probs = np.where(truth, crack, 0.0)
        probs[:, :4] = 0.6
        return image_counts(probs, truth)

    counts = Counts.stack([photo(0.9), photo(0.9), photo(0.45)])
    moved, unmoved = (choose_threshold(counts, 0.2, prior) for prior in (PRIOR_LABELS, 0))
    assert moved.leave_one_out_f == pytest.approx(moved.version_f) == pytest.approx(2 / 3)
    assert unmoved.leave_one_out_f == pytest.approx(2 * 160 / (2 * 160 + 160 + 80))


def test_labels_whose_thresholds_disagree_keep_the_versions_own():
    # one photo wants a threshold of 0.8 or more, the other one below 0.35: moved toward
    # either, the threshold fails the other (F 0.286 held out against 0.5 at 0.3)
    counts = Counts.stack([_photo(0.9, 0.8), _photo(0.35, 0.1)])
    choice = choose_threshold(counts, version_threshold=0.3)
    assert choice.threshold is None and "leave-one-out <=" in choice.reason
    assert choice.leave_one_out_f < choice.version_f


def test_a_move_that_rounds_to_the_versions_own_is_no_change():
    counts = Counts.stack([_ramp_photo(0.95, 0.21)] * 3)  # best just above 0.2
    choice = choose_threshold(counts, version_threshold=0.2)
    assert choice.threshold is None and choice.reason.endswith("is its own")


def test_where_the_others_show_no_crack_the_held_out_label_meets_the_versions_own():
    # the backend never refits on crack-free labels, so neither does the replay: the crack
    # photo's fold is scored at the version's 0.3 (F 0.167), not moved toward 0.7
    free = image_counts(np.full((20, 20), 0.7), np.zeros((20, 20), bool))
    choice = choose_threshold(Counts.stack([_photo(0.35, 0.1), free, free]), 0.3)
    crack_only = choose_threshold(Counts.stack([_photo(0.35, 0.1)]), 0.3)
    expected = 2 * 80 / (2 * 80 + 800)  # the free photos' 800 pixels are false positives
    assert choice.leave_one_out_f == pytest.approx(expected) == pytest.approx(choice.version_f)
    assert crack_only.version_f == 1.0


def test_no_labels_is_an_error():
    with pytest.raises(ValueError, match="no labelled images"):
        choose_threshold(Counts(*(np.zeros((0, 100), np.int64) for _ in range(4))), 0.2)


def test_one_label_never_moves_it():
    choice = choose_threshold(Counts.stack([_photo(0.9, 0.5)]), version_threshold=0.95)
    assert choice.threshold is None and "one label" in choice.reason and 0.5 <= choice.refit < 0.9


def test_the_versions_threshold_is_read_on_the_metrics_grid():
    # 0.29 is 28.999... x 100: the grid's 0.29, at which a crack scored 0.285 is not marked
    choice = choose_threshold(Counts.stack([_photo(0.285, 0.1)] * 2), version_threshold=0.29)
    assert choice.version_f == 0.0 and choice.refit_f == 1.0


def test_a_held_out_image_is_never_scored_at_threshold_zero():
    # the others are crack-free (F flat, best at 0): the refit would not serve 0, so the
    # held-out photo is scored at the version's own threshold, as it would be served
    free = image_counts(np.zeros((20, 20)), np.zeros((20, 20), bool))  # nothing marked
    choice = choose_threshold(Counts.stack([_photo(0.9, 0.5), free, free]), version_threshold=0.6)
    assert choice.leave_one_out_f == choice.version_f
