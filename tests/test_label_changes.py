"""Which labels count as new for the reconcile and idle jobs, and which judge a candidate
(backend/retrain.py)."""

import shutil

from backend.retrain import changed_labels, fingerprint, judge_labels, thorough_due
from selection.images import content_hash
from training.data import find_samples, load

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


def test_the_judge_is_never_an_image_the_serving_version_trained_on(crack_data, tmp_path):
    cfd = sorted((crack_data / "cfd" / "images").iterdir())[:5]
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for task, image in enumerate(cfd, start=1):  # task 1 oldest, task 5 newest
        shutil.copy(image, tmp_path / "images" / f"task-{task}{image.suffix}")
        shutil.copy(crack_data / "cfd" / "masks" / f"{image.stem}.png",
                    tmp_path / "masks" / f"task-{task}.png")  # fmt: skip
    labels = sorted(load(find_samples(tmp_path)), key=lambda i: i.sample.image.stem)

    def judged(before: set[int], seen_tasks: set[int]) -> list[str]:
        seen = {content_hash(cfd[t - 1].read_bytes()) for t in seen_tasks}
        return [i.sample.image.stem for i in judge_labels(labels, before, seen)]

    assert judged(set(), set()) == ["task-5"]  # 5 labels: the newest one
    assert judged({5}, set()) == ["task-4"]  # judged once already: the next newest
    assert judged(set(), {5, 4}) == ["task-3"]  # the serving version trained on 5 and 4
    assert judged({3}, {1, 2, 4, 5}) == []  # nothing it has not seen: no held-out test
    shutil.copy(cfd[3], tmp_path / "images" / f"task-6{cfd[3].suffix}")  # task 4's twin
    shutil.copy(tmp_path / "masks" / "task-4.png", tmp_path / "masks" / "task-6.png")
    labels = sorted(load(find_samples(tmp_path)), key=lambda i: i.sample.image.stem)
    assert judged(set(), set()) == ["task-5"]  # 6 and 4 hold one image: neither judges
