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
    # threshold fails the other, while the version's 0.2 serves both
    counts = Counts.stack([_photo(0.9, 0.5), _photo(0.3, 0.1)])
    choice = choose_threshold(counts, version_threshold=0.2)
    assert choice.threshold is None
    assert choice.leave_one_out_f < choice.version_f


def test_one_label_never_moves_it():
    choice = choose_threshold(Counts.stack([_photo(0.9, 0.5)]), version_threshold=0.2)
    assert choice.threshold is None and 0.5 <= choice.refit < 0.9
