"""Which labels count as new for the reconcile and idle jobs (backend/retrain.py)."""

from backend.retrain import changed_labels, fingerprint

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
