"""A project's threshold is refitted only when it wins leave-one-out (training.threshold_choice)."""

import numpy as np

from training.metrics import Counts, image_counts
from training.threshold_choice import choose_threshold


def _photo(crack_prob: float, background_prob: float) -> Counts:
    """A 20 x 20 image, a 4-pixel-wide crack the model scores `crack_prob`, the rest
    `background_prob`: its best thresholds lie in [background_prob, crack_prob)."""
    truth = np.zeros((20, 20), bool)
    truth[:, 8:12] = True
    return image_counts(np.where(truth, crack_prob, background_prob), truth)


def test_labels_that_agree_on_a_threshold_move_it():
    counts = Counts.stack([_photo(0.9, 0.5), _photo(0.8, 0.5), _photo(0.85, 0.5)])
    choice = choose_threshold(counts, version_threshold=0.2)  # marks every background pixel
    assert choice.threshold == choice.refit and 0.5 <= choice.refit < 0.8
    assert choice.leave_one_out_f == 1.0 > choice.version_f


def test_labels_whose_thresholds_disagree_keep_the_versions_own():
    # one photo wants a high threshold, the other a low one: fitted on either, the
    # threshold fails the other (F 0.286 pooled), while the version's 0.2 does better (0.5)
    counts = Counts.stack([_photo(0.9, 0.5), _photo(0.3, 0.1)])
    choice = choose_threshold(counts, version_threshold=0.2)
    assert choice.threshold is None and "leave-one-out <=" in choice.reason
    assert choice.leave_one_out_f < choice.version_f < choice.refit_f


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
