"""Which adapted version serves a project: judged on its newest labels held out, with the
base validation set as a guard (a tolerance, not a veto)."""

import pytest

from backend.retrain import held_out_count
from training.fit import Judged, _decide


def judged(val=0.70, parent_val=0.72, held=0.40, parent_held=0.30, images=1, guard=0.03):
    return Judged(val, parent_val, held, parent_held, images, guard)


def test_better_on_the_held_out_labels_within_the_guard_is_promoted():
    promoted, reason = _decide("if-better", "v1", judged())
    assert promoted and "held out, 0.4000 vs v1's 0.3000" in reason


def test_worse_on_the_held_out_labels_keeps_the_parent():
    promoted, reason = _decide("if-better", "v1", judged(held=0.25))
    assert not promoted and reason.startswith("kept v1")


def test_a_collapse_on_the_base_validation_set_keeps_the_parent():
    promoted, reason = _decide("if-better", "v1", judged(val=0.60))
    assert not promoted and "fell by more than 0.03" in reason


def test_with_nothing_held_out_the_guard_decides():
    one = judged(held=None, parent_held=None, images=0)
    assert _decide("if-better", "v1", one)[0]  # 0.70 is within 0.03 of 0.72
    assert "nothing held out" in _decide("if-better", "v1", one)[1]
    assert not _decide("if-better", "v1", judged(val=0.6, held=None, parent_held=None))[0]
    strict = judged(held=None, parent_held=None, guard=0.0)  # crackal train --from: no loss
    assert not _decide("if-better", "v1", strict)[0]


@pytest.mark.parametrize("policy, expected", [("always", True), ("never", False)])
def test_always_and_never_ignore_the_scores(policy, expected):
    assert _decide(policy, "v1", judged(held=0.0))[0] is expected


@pytest.mark.parametrize("labels, held", [(0, 0), (1, 0), (2, 1), (3, 1), (8, 2), (40, 10)])
def test_the_newest_quarter_is_held_out_once_there_are_two(labels, held):
    assert held_out_count(labels) == held
