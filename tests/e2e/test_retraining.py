"""The retraining loop end to end, on a real Redis with a real `crackal worker` (rq):
labels posted in Label Studio -> webhooks -> a new model version -> its predictions for
every unlabelled task -> the queue follows it. And the loop survives Redis going away."""

from __future__ import annotations

import time

import pytest
import requests

from .helpers import brush_annotation, make_project, wait_for


@pytest.fixture(scope="module")
def project(label_studio, rq_backend, crack_data, trained_registry):
    paths = sorted((crack_data / "crack500" / "images").iterdir())[::30][:10]
    return make_project(
        label_studio, rq_backend["url"], "retrain", paths, trained_registry.current()
    )


def annotate(ls, task: dict, crack_data) -> None:
    mask = crack_data / "crack500" / "masks" / f"{task['source'].stem}.png"
    ls.call("POST", f"/api/tasks/{task['id']}/annotations", json=brush_annotation(mask))


def new_version(registry, old: str, seconds: float = 300) -> str:
    return wait_for(
        lambda: (lambda v: v if v != old else None)(registry.current()),
        seconds,
        f"a model version after {old}",
    )


def test_three_labels_adapt_the_model_and_the_queue_follows(
    label_studio, rq_backend, project, trained_registry, crack_data
):
    ls, pid = label_studio, project["id"]
    labelled = project["tasks"][:3]
    for task in labelled:
        annotate(ls, task, crack_data)
    new = new_version(trained_registry, project["version"])
    meta = trained_registry.meta(new)
    assert meta["parent"] == project["version"]
    assert {r["image"] for r in meta["training"]["added_images"]} == {
        f"task-{t['id']}.jpg" for t in labelled
    }
    assert 0.0 <= meta["metrics"]["labelled"]["ods"] <= 1.0

    def followed():
        proj = ls.call("GET", f"/api/projects/{pid}")
        unlabelled = [t for t in ls.tasks(pid) if not t["annotations"]]
        ok = proj["model_version"] == new and all(
            any(p["model_version"] == new for p in t["predictions"]) for t in unlabelled
        )
        return unlabelled if ok else None

    unlabelled = wait_for(followed, 240, "predictions of the new version")
    assert len(unlabelled) == len(project["tasks"]) - 3
    scores = {
        t["id"]: next(p["score"] for p in t["predictions"] if p["model_version"] == new)
        for t in unlabelled
    }
    served = ls.call("GET", f"/api/projects/{pid}/next")
    assert served["id"] == min(scores, key=scores.get)

    health = requests.get(f"{rq_backend['url']}/health", timeout=10).json()
    assert health["model_version"] == new and health["jobs"]["backend"] == "rq"
    job = wait_for(
        lambda: (lambda j: j if j.get("state") == "finished" else None)(
            requests.get(f"{rq_backend['url']}/health", timeout=10)
            .json()["jobs"]["last"]
            .get(f"retrain:{pid}", {})
        ),
        60,
        "the job's result in /health",
    )
    assert job["result"]["version"] == new and job["result"]["labels"] == 3
    assert health["metrics"]["labelled"]["ods"] == meta["metrics"]["labelled"]["ods"]


def test_redis_down_webhooks_answered_error_visible_and_no_label_lost(
    label_studio, rq_backend, project, trained_registry, crack_data
):
    ls, pid, url = label_studio, project["id"], rq_backend["url"]
    before = trained_registry.current()
    rq_backend["redis"].stop()
    try:
        t0 = time.monotonic()
        resp = requests.post(
            f"{url}/webhook",
            timeout=5,
            json={"action": "ANNOTATION_CREATED", "project": {"id": pid}, "annotation": {"id": 1}},
        )
        assert time.monotonic() - t0 < 1.0
        assert resp.status_code == 200 and resp.json()["status"].startswith("not queued")
        assert "unavailable" in requests.get(f"{url}/health", timeout=5).json()["jobs"]["error"]
        annotate(ls, project["tasks"][3], crack_data)  # Label Studio's webhook is lost too
    finally:
        rq_backend["redis"].start()
    if not rq_backend["worker"].alive():  # a supervisor restarts it (compose: restart)
        rq_backend["worker"].start()
    resp = requests.post(
        f"{url}/webhook", timeout=5, json={"action": "START_TRAINING", "project": {"id": pid}}
    )
    assert resp.json()["status"] == "queued"
    new = new_version(trained_registry, before)
    added = {r["image"] for r in trained_registry.meta(new)["training"]["added_images"]}
    assert added == {f"task-{t['id']}.jpg" for t in project["tasks"][:4]}
