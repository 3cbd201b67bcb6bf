"""Which labels count as new for the reconcile and idle jobs (backend/retrain.py)."""

from backend.retrain import changed_labels, fingerprint, thorough_due

REVISIONS = {
    1: ("2026-11-01T10:00:00Z", "11"),
    2: ("2026-11-01T10:05:00Z", "12"),
    3: ("2026-11-02T09:00:00Z", "13"),
}


def test_before_any_retrain_every_label_is_new():
    assert changed_labels(REVISIONS, {}) == [1, 2, 3]


def test_new_edited_deleted_and_held_out_labels_count_trained_ones_do_not():
    before = {"revisions": {"1": "11:2026-11-01T10:00:00Z", "2": "12:2026-11-01T09:00:00Z"}}
    # 1 trained as is; 2 edited since (another time); 3 new (or held out: not recorded)
    assert changed_labels(REVISIONS, before) == [2, 3]
    everything = {str(t): f"{a}:{u}" for t, (u, a) in REVISIONS.items()}
    assert changed_labels(REVISIONS, {"revisions": everything}) == []
    replaced = {**everything, "3": "99:2026-11-02T09:00:00Z"}  # another annotation
    assert changed_labels(REVISIONS, {"revisions": replaced}) == [3]
    deleted = {**everything, "4": "14:2026-11-01T08:00:00Z"}  # trained on, label deleted since
    assert changed_labels(REVISIONS, {"revisions": deleted}) == [4]


def test_a_record_without_revisions_is_all_or_nothing():
    same = {"fingerprint": fingerprint(REVISIONS, REVISIONS)}
    assert changed_labels(REVISIONS, same) == []
    assert changed_labels(REVISIONS, {"fingerprint": "stale"}) == [1, 2, 3]
    assert changed_labels(REVISIONS, {"revisions": "not a dict"}) == [1, 2, 3]


def test_a_thorough_pass_is_due_after_a_quick_retrain_until_a_label_changes():
    """Due when the last retrain was quick and only the labels it held out changed since
    (they judge the thorough candidate as they judged the quick one)."""
    quick = {
        "preset": "quick",
        "version": "v7",
        "round_judge": [3],
        "revisions": {"1": "11:2026-11-01T10:00:00Z", "2": "12:2026-11-01T10:05:00Z"},
    }
    assert thorough_due(quick, REVISIONS)
    assert not thorough_due({**quick, "preset": "thorough"}, REVISIONS)  # done already
    assert not thorough_due({**quick, "version": None}, REVISIONS)  # nothing was trained
    assert not thorough_due({k: v for k, v in quick.items() if k != "preset"}, REVISIONS)
    assert not thorough_due({**quick, "round_judge": []}, REVISIONS)  # 3 is a new label
    edited = {**REVISIONS, 2: ("2026-11-03T08:00:00Z", "12")}
    assert not thorough_due(quick, edited)
    assert not thorough_due(quick, {**REVISIONS, 4: ("2026-11-03T08:00:00Z", "14")})
    assert not thorough_due(quick, {1: REVISIONS[1], 3: REVISIONS[3]})  # 2 deleted
    assert thorough_due(quick, {1: REVISIONS[1], 2: REVISIONS[2]})  # the judged one deleted
