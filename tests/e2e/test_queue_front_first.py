"""A new version's re-score against a real Label Studio: the masks are made in the queue's
order and Label Studio follows the new version as soon as the queue's first page is in,
while the rest of the pool is still being masked; at the end every unlabelled task shows
the new version once, except a task whose image vanished meanwhile: it fails alone, with
its reason, and keeps what it showed. A scoring that stops half-way (Label Studio gone
mid-job) leaves a note, and the project's next job, a reconcile that has no labels to train
on, scores the rest."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from backend.job_functions import run_job
from backend.label_studio import LabelStudioError
from backend.pool_store import PoolStore
from backend.prediction_label import version_label
from backend.service import Service
from backend.settings import Settings

from .helpers import brush_annotation, registry_copy, uploaded_project

PAGE = 2  # tasks per import page


class Stopping(Service):
    """The backend's service, with Label Studio gone from the `stop_at`-th image fetch on."""

    def __init__(self, settings: Settings, stop_at: int) -> None:
        super().__init__(settings)
        self.fetches, self.stop_at = 0, stop_at

    def fetch_image(self, task, target):
        self.fetches += 1
        if self.fetches >= self.stop_at:
            raise LabelStudioError("Label Studio is unreachable (stopped by the test)")
        return super().fetch_image(task, target)


class Watched(Service):
    """The backend's service; every image fetch first notes what Label Studio shows."""

    def __init__(self, settings: Settings, look) -> None:
        super().__init__(settings)
        self.look = look
        self.seen: list[tuple[int, str, set[int]]] = []

    def fetch_image(self, task, target):
        self.seen.append((task["id"], *self.look()))
        return super().fetch_image(task, target)


def test_a_new_versions_masks_follow_the_queue_and_its_front_is_served_first(
    label_studio, trained_registry, base_train, crack_data, tmp_path
):
    registry = registry_copy(trained_registry, tmp_path / "registry")
    cfd = sorted((crack_data / "cfd" / "images").iterdir())
    pid = uploaded_project(label_studio, "front first", cfd[:8])
    (tmp_path / "files").mkdir()
    vanishing = tmp_path / "files" / "vanishing.jpg"
    shutil.copy(cfd[20], vanishing)
    label_studio.call(
        "POST", f"/api/projects/{pid}/import", json=[{"data": {"image": str(vanishing)}}]
    )
    old = registry.current(pid)
    new_label = version_label(f"v{int(registry.versions()[-1][1:]) + 1}")

    def look() -> tuple[str, set[int]]:
        """The version Label Studio's queue follows, and the tasks showing the new one."""
        shown = label_studio.call("GET", f"/api/projects/{pid}")["model_version"]
        showing_new = {
            t["id"]
            for t in label_studio.tasks(pid)
            if any(p["model_version"] == new_label for p in t["predictions"])
        }
        return shown, showing_new

    settings = Settings(
        label_studio_url=label_studio.url,
        label_studio_api_key=label_studio.token,
        registry=registry.root,
        base_train=base_train,
        cache=tmp_path / "cache",
        feature_size=224,
        local_files_root=tmp_path / "files",
        onnx=False,  # as the suite's backends: torch masks, no export per version
    )
    service = Watched(settings, look)
    first = service.rescore_project(pid, front=PAGE, page_size=PAGE)
    assert first.fetched == 9 and first.masked_in_order == 0  # cold: masked as fetched
    assert first.predictions == 9 and not first.errors
    tasks = {t["id"]: t for t in label_studio.tasks(pid)}
    (broken,) = [t for t, task in tasks.items() if task["data"]["image"] == str(vanishing)]
    vanishing.unlink()
    labelled = min(t for t in tasks if t != broken)
    upload = Path(tasks[labelled]["data"]["image"]).name.split("-", 1)[1]  # "<8 chars>-<name>"
    annotation = brush_annotation(crack_data / "cfd" / "masks" / f"{Path(upload).stem}.png")
    label_studio.call("POST", f"/api/tasks/{labelled}/annotations", json=annotation)

    # a project version whose masks differ (its head's bias raised), features unchanged
    loaded = registry.load(old)
    weights = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    head = [k for k in weights if k.startswith("segmentation_head") and k.endswith("bias")]
    weights[head[-1]] += 2.0
    meta = {k: loaded.meta[k] for k in ("encoder", "encoder_sha256", "threshold")}
    new = registry.register(weights, meta)
    registry.set_current(new, reason="test", project=pid)
    assert version_label(new) == new_label and registry.current(pid) == new

    service.seen.clear()
    second = service.rescore_project(pid, front=PAGE, page_size=PAGE)
    assert second.model_version == new and second.labelled == 1
    # the labelled task is not masked; the vanished image fails alone, with its reason
    assert second.fetched == 7 and second.masked_in_order == 7 and second.predictions == 7
    assert second.removed == 7 and list(second.errors) == [broken]
    assert "vanishing.jpg" in second.errors[broken]
    assert PoolStore(registry.root, pid).load_skipped() == {str(broken): second.errors[broken]}
    assert second.ordered_after_s > 0

    # fetched in the order Label Studio serves: ascending score of the new predictions
    tasks = {t["id"]: t for t in label_studio.tasks(pid)}
    score = {
        tid: next(p["score"] for p in t["predictions"] if p["model_version"] == new_label)
        for tid, t in tasks.items()
        if tid not in (broken, labelled)
    }
    order = [tid for tid, _, _ in service.seen]
    assert sorted(order) == sorted(set(tasks) - {labelled})
    assert [t for t in order if t != broken] == sorted(score, key=lambda t: (score[t], t))
    # before the first page: the old version everywhere; from the second page on, Label
    # Studio follows the new one and exactly the pages before it show it
    for i, (_, shown, showing_new) in enumerate(service.seen):
        assert showing_new == set(order[: i - i % PAGE]) - {broken}
        assert shown == (new_label if i >= PAGE else version_label(old))
    # at the end each task shows one crackal prediction: the new version's, or the old one
    # where the image is gone or the task is labelled
    for tid, task in tasks.items():
        shows = [p["model_version"] for p in task["predictions"]]
        assert shows == [version_label(old) if tid in (broken, labelled) else new_label]
    served = label_studio.call("GET", f"/api/projects/{pid}/next")
    assert served["id"] == next(t for t in order if t != broken)

    # a third version whose scoring stops on its second page: the queue follows it already,
    # the rest of the pool still shows the second; the note left behind makes the project's
    # next job (a reconcile with too few labels to train) score the rest
    weights[head[-1]] += 2.0
    third = registry.register(weights, meta)
    registry.set_current(third, reason="test", project=pid)
    store = PoolStore(registry.root, pid)
    assert not store.pages_unfinished()
    with pytest.raises(LabelStudioError, match="stopped by the test"):
        Stopping(settings, stop_at=PAGE + 1).rescore_project(pid, front=PAGE, page_size=PAGE)
    assert store.pages_unfinished()
    tasks = {t["id"]: t for t in label_studio.tasks(pid)}
    showing = {t: [p["model_version"] for p in task["predictions"]] for t, task in tasks.items()}
    assert 1 <= sum(version_label(third) in v for v in showing.values()) <= PAGE
    assert label_studio.call("GET", f"/api/projects/{pid}")["model_version"] == version_label(third)

    result = run_job("reconcile", pid, Service(settings))
    assert result["status"] == "too few new labels" and result["serving"] == third
    assert not store.pages_unfinished()
    final = {
        t["id"]: [p["model_version"] for p in t["predictions"]] for t in label_studio.tasks(pid)
    }
    for tid, shows in final.items():
        expected = version_label(old) if tid in (broken, labelled) else version_label(third)
        assert shows == [expected]
