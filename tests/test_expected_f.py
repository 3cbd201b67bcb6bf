"""The expected-F curve: a non-increasing fit of pre-annotation F against distance, and
as a queue score the farthest-first order unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from selection.expected_f import TIE, ExpectedF
from selection.queue_order import queue_scores
from selection.strategies import Strategy


def test_points_that_already_fall_are_the_curve_and_a_rise_is_pooled():
    falling = ExpectedF([(0.0, 0.9), (0.5, 0.6), (1.0, 0.2)])
    assert falling(np.array([0.0, 0.25, 0.5, 1.0])) == pytest.approx([0.9, 0.75, 0.6, 0.2])
    rising = ExpectedF([(0.1, 0.8), (0.4, 0.5), (0.6, 0.7), (0.9, 0.1)])
    # 0.5 then 0.7 violates "falls with distance": both become their mean (0.6)
    assert rising(np.array([0.4, 0.6])) == pytest.approx([0.6, 0.6])
    assert rising(np.array([-1.0, 2.0])) == pytest.approx([0.8, 0.1])  # clipped to the ends


def test_too_few_labels_give_no_curve_and_unplaced_or_damaged_labels_do_not_count():
    assert ExpectedF.from_labels([(0.1, 0.5), (None, 0.4), (0.3, float("nan"))]) is None
    damaged = [(float("nan"), 0.5), (0.2, None), (0.3, "0.5"), (True, 0.4), (0.5, float("inf"))]
    assert ExpectedF.from_labels([(0.1, 0.5), (0.2, 0.4), *damaged]) is None
    assert ExpectedF.from_labels([(0.1, 0.5), (0.2, 0.4), (0.3, 0.3)]).labels == 3


def test_as_a_queue_score_it_keeps_the_farthest_first_order_within_tie_of_the_curve():
    rng = np.random.default_rng(0)
    scaled = np.concatenate([rng.uniform(0, 1, 200), [0.0, 1.0, 0.5, 0.5]])
    curve = ExpectedF(zip(rng.uniform(0, 1, 12), rng.uniform(0, 1, 12), strict=True))
    primary, pool = rng.normal(size=(5, 8)), rng.normal(size=(len(scaled), 8))
    scores = queue_scores(Strategy.FARTHEST, primary, pool, scaled, (0.6, 1.0), 4, 0, curve)
    plain = queue_scores(Strategy.FARTHEST, primary, pool, scaled, (0.6, 1.0), 4, 0)
    assert np.array_equal(np.argsort(scores, kind="stable"), np.argsort(plain, kind="stable"))
    assert np.abs(scores - curve(scaled)).max() <= TIE
    assert scores.min() >= 0.0 and scores.max() <= 1.0
