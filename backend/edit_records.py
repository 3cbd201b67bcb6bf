"""Every submitted annotation is a free test of the version that pre-annotated it: how much
of crackal's mask the annotator kept (pixel F, and F with DeepCrack's 2-pixel tolerance),
with the prediction's version and score, the task's scaled distance under that version
(from the last scoring job, when it scored with that version) and the time the annotator
spent (`lead_time`).

One record per annotation revision (annotation id + its `updated_at`), appended to
`<registry>/projects/project-<id>/edits.jsonl`; records survive restarts and re-scoring
(predictions may be replaced, their records stay)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backend.prediction_label import labelled_version
from training.metrics import image_counts, scores
from training.registry import project_folder

TOLERANCE = 2.0  # pixels, as DeepCrack's tolerant F


@dataclass(frozen=True)
class EditRecord:
    task: int
    annotation: int
    updated_at: str
    model_version: str
    prediction: int | None
    prediction_score: float | None
    pixel_f: float
    tolerant_f: float
    label_pixels: int
    predicted_pixels: int
    lead_time: float | None
    recorded_at: float
    scaled_distance: float | None = None  # the task's scaled I_dist under that version

    @property
    def key(self) -> tuple[int, str]:
        return self.annotation, self.updated_at


def starting_prediction(task: dict[str, Any], annotation: dict[str, Any]) -> dict[str, Any] | None:
    """The crackal prediction the annotator started from: the annotation's
    `parent_prediction` when it is one of ours, else the newest of ours created before the
    annotation (None when crackal had not pre-annotated the task)."""
    predictions = [
        p
        for p in task.get("predictions") or []
        if isinstance(p, dict) and labelled_version(p.get("model_version")) is not None
    ]
    parent = annotation.get("parent_prediction")
    for p in predictions:
        if parent is not None and p.get("id") == parent:
            return p
    created = str(annotation.get("created_at") or "")
    before = [p for p in predictions if str(p.get("created_at") or "") <= created]
    return max(before, key=lambda p: str(p.get("created_at") or ""), default=None)


def mask_f(predicted: np.ndarray, label: np.ndarray, tolerance: float = 0.0) -> float:
    """F of a binary predicted mask against the label (R = 1 on a crack-free label). A
    binary mask is the same at every threshold, so the best F is that F."""
    return float(scores(image_counts(predicted.astype(np.float32), label, tolerance)).ods)


def make_record(
    task_id: int,
    annotation: dict[str, Any],
    prediction: dict[str, Any],
    predicted: np.ndarray,
    label: np.ndarray,
    scaled_distance: float | None = None,
) -> EditRecord:
    lead = annotation.get("lead_time")
    score = prediction.get("score")
    return EditRecord(
        task=task_id,
        annotation=int(annotation["id"]),
        updated_at=str(annotation.get("updated_at") or annotation.get("created_at") or ""),
        model_version=labelled_version(prediction.get("model_version")) or "",
        prediction=prediction.get("id") if isinstance(prediction.get("id"), int) else None,
        prediction_score=float(score) if isinstance(score, int | float) else None,
        pixel_f=mask_f(predicted, label),
        tolerant_f=mask_f(predicted, label, TOLERANCE),
        label_pixels=int(label.sum()),
        predicted_pixels=int(predicted.sum()),
        lead_time=float(lead) if isinstance(lead, int | float) else None,
        recorded_at=time.time(),
        scaled_distance=scaled_distance,
    )


class EditLog:
    """The append-only record file of one project."""

    def __init__(self, registry_root: Path | str, project_id: int) -> None:
        self.path = project_folder(registry_root, project_id) / "edits.jsonl"

    def read(self) -> list[EditRecord]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(EditRecord(**json.loads(line)))
            except (ValueError, TypeError):
                continue  # a line cut by a crash mid-write
        return out

    def stamp(self) -> tuple[int, int, int] | None:
        """Changes whenever the file does (inode, size, modification time); None without
        a file."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def keys(self) -> set[tuple[int, str]]:
        return {r.key for r in self.read()}

    def append(self, records: list[EditRecord]) -> None:
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as fh:
            if fh.tell() > 0:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")  # end a line cut by a crash: it stays unreadable alone
            for record in records:
                fh.write((json.dumps(asdict(record)) + "\n").encode())
            fh.flush()
            os.fsync(fh.fileno())
