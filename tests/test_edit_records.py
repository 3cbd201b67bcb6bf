"""Edit records: how much of crackal's pre-annotation an annotator kept, on a real mask."""

from __future__ import annotations

import numpy as np
import pytest

from backend.edit_records import EditLog, make_record, mask_f, starting_prediction
from selection.images import read_rgb
from training.data import read_mask


@pytest.fixture(scope="module")
def label(crack_data):
    image = sorted((crack_data / "cfd" / "images").iterdir())[0]
    mask = crack_data / "cfd" / "masks" / f"{image.stem}.png"
    return read_mask(mask, read_rgb(image).shape[:2])


def test_f_of_kept_shifted_and_missed_masks(label):
    assert label.any()
    assert mask_f(label, label) == 1.0
    assert mask_f(np.zeros_like(label), label) == 0.0
    shifted = np.roll(label, 1, axis=1)  # one pixel off: wrong pixel-exactly, right within 2 px
    assert mask_f(shifted, label) < 0.9
    assert mask_f(shifted, label, 2.0) == pytest.approx(1.0, abs=0.02)
    empty = np.zeros_like(label)
    assert mask_f(empty, empty) == 1.0  # crack-free, predicted crack-free


def test_the_starting_prediction_is_the_parent_else_the_newest_of_ours_before():
    task = {
        "predictions": [
            {"id": 1, "model_version": "crackal-v1", "created_at": "2026-01-01T10:00"},
            {"id": 2, "model_version": "crackal-v2", "created_at": "2026-01-02T10:00"},
            {"id": 3, "model_version": "v2", "created_at": "2026-01-02T11:00"},  # not ours
            {"id": 5, "model_version": None, "created_at": "2026-01-02T12:00"},
            {"id": 4, "model_version": "crackal-v3", "created_at": "2026-01-05T10:00"},
        ]
    }
    annotation = {"id": 9, "created_at": "2026-01-03T10:00"}
    assert starting_prediction(task, annotation)["id"] == 2
    assert starting_prediction(task, {**annotation, "parent_prediction": 1})["id"] == 1
    assert starting_prediction(task, {**annotation, "parent_prediction": 3})["id"] == 2
    early = {"id": 9, "created_at": "2025-12-31T10:00"}
    assert starting_prediction(task, early) is None


def test_the_log_appends_reads_and_survives_a_cut_line(label, tmp_path):
    log = EditLog(tmp_path, 7)
    annotation = {"id": 5, "updated_at": "2026-01-03T10:00", "lead_time": 42.5}
    prediction = {"id": 2, "model_version": "crackal-v2", "score": 0.25}
    record = make_record(11, annotation, prediction, label, label)
    log.append([record])
    with open(log.path, "a") as fh:
        fh.write('{"task": 12, "annot')  # a crash mid-write
    (back,) = log.read()
    assert back == record and back.key == (5, "2026-01-03T10:00")
    later = make_record(11, {**annotation, "updated_at": "2026-01-04"}, prediction, label, label)
    log.append([later])  # after the cut line: not glued to it
    assert log.read() == [record, later] and len(log.keys()) == 2
    assert (back.pixel_f, back.lead_time, back.model_version) == (1.0, 42.5, "v2")
    assert back.label_pixels == back.predicted_pixels == int(label.sum())
