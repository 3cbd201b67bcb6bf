"""What `crackal status` says of a project's threshold decision, odd records included."""

import pytest

from backend.project_threshold import RULE
from crackal.status import threshold_line

FITTED = {"version": "v3", "threshold": 0.82, "labels": 7, "rule": RULE, "reason": "7/14 ..."}


def test_a_threshold_in_use_is_shown_with_its_reason():
    assert threshold_line(FITTED, "v3") == "  mask threshold 0.82 after 7 labels (7/14 ...)"


def test_a_refused_move_says_why_the_versions_own_serves():
    refused = {**FITTED, "threshold": None, "reason": "3/10 of the way ... <= 0.5 at its own"}
    assert threshold_line(refused, "v3") == (
        "  mask threshold: the version's own (3/10 of the way ... <= 0.5 at its own)"
    )


def test_a_decision_for_another_version_is_not_shown():
    assert threshold_line(FITTED, "v4") is None


@pytest.mark.parametrize("rule", [None, "leave-one-out"])
def test_a_decision_by_an_earlier_rule_is_named_as_not_used(rule):
    said = threshold_line({**FITTED, "rule": rule}, "v3")
    assert (
        said
        == "  mask threshold: the version's own (a decision by an earlier release's rule, not used)"
    )


@pytest.mark.parametrize(
    "odd",
    [10**400, "0.5", True, 1.5, float("nan"), [0.5], {"a": 1}],
)
def test_odd_threshold_values_are_never_served_nor_crash_status(odd):
    said = threshold_line({**FITTED, "threshold": odd}, "v3")
    assert said is not None and "the version's own" in said


@pytest.mark.parametrize("record", [None, [], "x", {"version": 3}, {}])
def test_odd_records_say_nothing(record):
    assert threshold_line(record, "v3") is None
