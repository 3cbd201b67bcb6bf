"""The retraining loop end to end, on a real Redis with a real `crackal worker` (rq):
labels posted in Label Studio -> webhooks -> a new model version -> its predictions for
every unlabelled task -> the queue follows it. And the loop survives Redis going away, a
worker killed mid-job, and labels arriving while a job runs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from label_studio_sdk.converter.brush import decode_rle

from backend.annotations import is_labelled
from backend.prediction_label import labelled_version, version_label

from .helpers import BACKEND, brush_annotation, make_project, prediction, wait_for


@pytest.fixture(scope="module")
def project(label_studio, rq_backend, crack_data, trained_registry):
    paths = sorted((crack_data / "crack500" / "images").iterdir())[::20][:14]
    return make_project(
        label_studio, rq_backend["url"], "retrain", paths, trained_registry.current()
    )


# crackal's predictions each annotated task had when its label was posted: id -> RLE
SEEN_PREDICTIONS: dict[int, list[int]] = {}


def annotate(ls, task: dict, crack_data) -> None:
    mask = crack_data / "crack500" / "masks" / f"{task['source'].stem}.png"
    current = ls.call("GET", f"/api/tasks/{task['id']}")
    for p in current.get("predictions") or []:
        if labelled_version(p.get("model_version")):
            SEEN_PREDICTIONS[p["id"]] = p["result"][0]["value"]["rle"]
    ls.call("POST", f"/api/tasks/{task['id']}/annotations", json=brush_annotation(mask))


def start_training(url: str, pid: int) -> str:
    resp = BACKEND.post(
        f"{url}/webhook", timeout=5, json={"action": "START_TRAINING", "project": {"id": pid}}
    )
    return resp.json()["status"]


def last_job(url: str, pid: int, kind: str = "retrain") -> dict:
    jobs = BACKEND.get(f"{url}/health", timeout=10).json()["jobs"]
    return jobs.get("last", {}).get(f"{kind}:{pid}", {})


def job_in_state(url: str, pid: int, state: str, seconds: float, after: float = 0.0) -> dict:
    """The project's retrain job once it is in `state` (and started after `after`)."""
    return wait_for(
        lambda: (lambda j: j if j.get("state") == state and j["started"] > after else None)(
            last_job(url, pid)
        ),
        seconds,
        f"the retrain job to be {state!r}",
    )


def process_gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_idle(url: str, pid: int) -> None:
    """Until no job of the project is queued or running (an earlier test's job may be)."""

    def idle():
        jobs = BACKEND.get(f"{url}/health", timeout=10).json()["jobs"]
        return not any(k.endswith(f":{pid}") for k in jobs["queued"] + jobs["running"])

    wait_for(idle, 300, f"project {pid} to have no job queued or running")


def added_tasks(registry, version: str) -> set[str]:
    return {r["image"] for r in registry.meta(version)["training"]["added_images"]}


def task_files(tasks: list[dict]) -> set[str]:
    return {f"task-{t['id']}.jpg" for t in tasks}


def new_version(registry, old: str, pid: int, seconds: float = 300) -> str:
    """The version serving project `pid` once it is another than `old`."""
    return wait_for(
        lambda: (lambda v: v if v != old else None)(registry.current(pid)),
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
    new = new_version(trained_registry, project["version"], pid)
    assert trained_registry.current() == project["version"]  # the shared base model stays
    meta = trained_registry.meta(new)
    assert meta["parent"] == project["version"]
    assert {r["image"] for r in meta["training"]["added_images"]} == {
        f"task-{t['id']}.jpg" for t in labelled
    }
    assert 0.0 <= meta["metrics"]["labelled"]["ods"] <= 1.0
    # the decoder adapted, the encoder frozen: the new version embeds as its parent does
    assert meta["encoder_sha256"] == trained_registry.meta(project["version"])["encoder_sha256"]

    def followed():
        proj = ls.call("GET", f"/api/projects/{pid}")
        unlabelled = [t for t in ls.tasks(pid) if not t["annotations"]]
        ok = proj["model_version"] == version_label(new) and all(
            any(p["model_version"] == version_label(new) for p in t["predictions"])
            for t in unlabelled
        )
        return unlabelled if ok else None

    unlabelled = wait_for(followed, 240, "predictions of the new version")
    assert len(unlabelled) == len(project["tasks"]) - 3
    scores = {t["id"]: prediction(t, new)["score"] for t in unlabelled}
    served = ls.call("GET", f"/api/projects/{pid}/next")
    assert served["id"] == min(scores, key=scores.get)

    health = BACKEND.get(f"{rq_backend['url']}/health", timeout=10).json()
    view = health["projects"][str(pid)]
    assert view["serving"] == new and view["own_line"] and health["jobs"]["backend"] == "rq"
    job = wait_for(
        lambda: (lambda j: j if j.get("state") == "finished" else None)(
            BACKEND.get(f"{rq_backend['url']}/health", timeout=10)
            .json()["jobs"]["last"]
            .get(f"reconcile:{pid}", {})  # the threshold's job
        ),
        60,
        "the job's result in /health",
    )
    assert job["result"]["version"] == new and job["result"]["labels"] == 3
    assert view["metrics"]["labelled"]["ods"] == meta["metrics"]["labelled"]["ods"]

    # Label Studio's /setup after the new version queues no second scoring: the retrain
    # scored the pool with it (a scoring a /setup queued before that may still finish)
    def no_scoring_pending():
        jobs = BACKEND.get(f"{rq_backend['url']}/health", timeout=10).json()["jobs"]
        last = jobs["last"].get(f"rescore:{pid}", {})
        idle = f"rescore:{pid}" not in jobs["queued"] and last.get("state") != "running"
        return last if idle else None

    before = wait_for(no_scoring_pending, 120, "no scoring queued or running")
    config = ls.call("GET", f"/api/projects/{pid}")["label_config"]
    answer = BACKEND.post(
        f"{rq_backend['url']}/setup", json={"schema": config, "project": pid}, timeout=30
    )
    assert answer.status_code == 200 and answer.json()["model_version"] == version_label(new)
    time.sleep(3)
    assert no_scoring_pending() == before


def test_redis_down_webhooks_answered_error_visible_and_no_label_lost(
    label_studio, rq_backend, project, trained_registry, crack_data
):
    ls, pid, url = label_studio, project["id"], rq_backend["url"]
    before = trained_registry.current(pid)
    rq_backend["redis"].stop()
    try:
        t0 = time.monotonic()
        resp = BACKEND.post(
            f"{url}/webhook",
            timeout=5,
            json={"action": "ANNOTATION_CREATED", "project": {"id": pid}, "annotation": {"id": 1}},
        )
        assert time.monotonic() - t0 < 1.0
        assert resp.status_code == 200 and resp.json()["status"].startswith("not queued")
        assert "unavailable" in BACKEND.get(f"{url}/health", timeout=5).json()["jobs"]["error"]
        annotate(ls, project["tasks"][3], crack_data)  # Label Studio's webhook is lost too
    finally:
        rq_backend["redis"].start()
    # A worker that lost Redis quits, within a few seconds: a supervisor restarts it
    # (compose: restart). One still running 10 s after Redis is back survived.
    with contextlib.suppress(subprocess.TimeoutExpired):
        rq_backend["worker"].proc.wait(10)
    if not rq_backend["worker"].alive():
        rq_backend["worker"].start()
    assert start_training(url, pid) == "queued"
    new = new_version(trained_registry, before, pid)
    assert added_tasks(trained_registry, new) == task_files(project["tasks"][:4])


def test_killed_workers_leave_the_old_version_serving_and_the_job_is_retried_to_the_end(
    label_studio, rq_backend, project, trained_registry, crack_data
):
    ls, pid, url, worker = label_studio, project["id"], rq_backend["url"], rq_backend["worker"]
    wait_idle(url, pid)
    before = trained_registry.current(pid)
    annotate(ls, project["tasks"][4], crack_data)
    assert start_training(url, pid) == "queued"

    # 1. The process running the job dies (as the kernel's OOM killer does to it): the
    #    worker notices at once and rq retries the job after its backoff.
    first = job_in_state(url, pid, "running", 120)
    os.kill(first["pid"], signal.SIGKILL)
    lost = job_in_state(url, pid, "lost, will be retried", 60, after=first["started"] - 1)
    assert "SIGKILL" in lost["error"]

    # 2. The worker itself dies during the retry; the job's process notices and stops (rq
    #    puts it in a process group of its own, so it would otherwise run on, orphaned).
    second = job_in_state(url, pid, "running", 120, after=first["started"])
    assert second["attempt"] == first["attempt"] + 1 and second["pid"] != first["pid"]
    worker.kill()
    wait_for(lambda: process_gone(second["pid"]), 30, "the orphaned job process to stop")
    assert trained_registry.current(pid) == before  # nothing half-made was swapped in
    health = BACKEND.get(f"{url}/health", timeout=10).json()
    assert health["projects"][str(pid)]["serving"] == before
    assert ls.call("GET", f"/api/projects/{pid}")["model_version"] == version_label(before)

    # A supervisor restarts a worker; once the dead one's heartbeat expires (90 s), rq
    # finds the job abandoned and it is retried, to the end.
    worker.start("--check-every", "5")
    lost = job_in_state(url, pid, "lost, will be retried", 240, after=first["started"])
    assert "worker died" in lost["error"]
    done = job_in_state(url, pid, "finished", 420, after=second["started"])
    assert done["attempt"] == second["attempt"] + 1
    # (the restarted worker's reconcile job may have trained on the label first: then the
    # retry trained once more; either way the retry's version serves, on all 5 labels)
    new = done["result"]["version"]
    assert new != before and trained_registry.current(pid) == new
    assert added_tasks(trained_registry, new) == task_files(project["tasks"][:5])
    status = subprocess.run(
        [sys.executable, "-m", "crackal", "status", "--url", url],
        capture_output=True,
        text=True,
        check=True,
        env=rq_backend["env"],  # BASIC_AUTH_USER / BASIC_AUTH_PASS
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    assert f"project {pid}: serving {new} (its own line)" in status
    assert "  mask threshold" in status  # refitted, or the version's own with the reason
    assert f"retrain:{pid}: finished, attempt {done['attempt']}, on " in status


def test_labels_during_a_job_cause_exactly_one_follow_up_that_trains_on_all_of_them(
    label_studio, rq_backend, project, trained_registry, crack_data
):
    ls, pid, url = label_studio, project["id"], rq_backend["url"]
    wait_idle(url, pid)
    before, versions = trained_registry.current(pid), trained_registry.versions()
    annotate(ls, project["tasks"][5], crack_data)
    assert start_training(url, pid) == "queued"
    job = job_in_state(url, pid, "running", 120)
    for task in project["tasks"][6:11]:  # 5 labels: their webhooks reach the threshold
        annotate(ls, task, crack_data)
    presses = [start_training(url, pid) for _ in range(3)]  # and "Start training", thrice
    assert presses == ["follow-up"] * 3, "the first job ended before the labels were made"
    assert last_job(url, pid)["started"] == job["started"]

    first = new_version(trained_registry, before, pid)
    assert added_tasks(trained_registry, first) == task_files(project["tasks"][:6])
    follow_up = new_version(trained_registry, first, pid)
    assert added_tasks(trained_registry, follow_up) == task_files(project["tasks"][:11])
    # the threshold's reconcile trained them; the presses' follow-up found nothing new
    reconciled = wait_for(
        lambda: (
            lambda j: j if j.get("state") == "finished" and j["started"] > job["started"] else None
        )(last_job(url, pid, "reconcile")),
        240,
        "the threshold's reconcile job",
    )
    assert reconciled["result"]["version"] == follow_up
    done = job_in_state(url, pid, "finished", 240, after=job["started"])
    assert done["result"]["status"] == "no new labels"
    time.sleep(10)  # nothing else is queued or runs: exactly one follow-up
    jobs = BACKEND.get(f"{url}/health", timeout=10).json()["jobs"]
    assert jobs["queued"] == jobs["running"] == [] and jobs["queue_length"] == 0
    assert len(trained_registry.versions()) == len(versions) + 2


def test_a_webhook_storm_is_answered_fast_with_bounded_queue_growth(rq_backend):
    from redis import Redis

    url, redis = rq_backend["url"], Redis.from_url(rq_backend["redis"].url)
    missing = 987654  # a project Label Studio does not have: its one job ends saying so
    keys_before = redis.dbsize()
    http, slowest, answers = BACKEND, 0.0, []
    for i in range(200):
        start = time.monotonic()
        resp = http.post(
            f"{url}/webhook",
            timeout=5,
            json={
                "action": "ANNOTATION_CREATED",
                "project": {"id": missing},
                "annotation": {"id": i},
            },
        )
        slowest = max(slowest, time.monotonic() - start)
        assert resp.status_code == 200
        answers.append(resp.json()["status"])
    assert slowest < 1.0  # Label Studio waits 1 s for a webhook
    assert answers.count("counted") >= 130 and "queued" in answers
    assert set(answers) <= {"counted", "queued", "already queued", "follow-up"}
    jobs = BACKEND.get(f"{url}/health", timeout=10).json()["jobs"]
    assert jobs["queue_length"] <= 1
    assert [k for k in jobs["queued"] + jobs["running"] if k.endswith(f":{missing}")] == [
        f"reconcile:{missing}"  # the threshold's job
    ]
    assert redis.dbsize() - keys_before <= 20  # a few keys per job, none per event
    ended = wait_for(
        lambda: (lambda j: j if j.get("state") in ("finished", "failed") else None)(
            last_job(url, missing, "reconcile")
        ),
        180,
        "the storm's job to end (no such project)",
    )
    assert ended["state"] == "finished" and ended["attempt"] == 1  # nothing to retry
    assert ended["result"] == {"status": "no such project in Label Studio", "project": missing}


def test_rq_dashboard_shows_the_crackal_queue_and_its_worker(rq_backend, tmp_path):
    """The optional compose service `dashboard` (profile ops), as it runs there."""
    from backend import local_servers as server

    redis = rq_backend["redis"]
    port = server.free_port()
    url = f"http://127.0.0.1:{port}"
    dashboard = Path(sys.executable).parent / "rq-dashboard"
    cmd = [str(dashboard), "--redis-url", redis.url, "--bind", "127.0.0.1", "--port", str(port)]
    with server.running(cmd, dict(os.environ), tmp_path / "dashboard.log", f"{url}/", 60):
        queues = requests.get(f"{url}/0/data/queues.json", timeout=10).json()["queues"]
        assert "crackal" in {q["name"] for q in queues}
        workers = requests.get(f"{url}/0/data/workers.json", timeout=10).json()["workers"]
        assert any("crackal" in w["queues"] for w in workers), workers


def f_of(predicted: np.ndarray, label: np.ndarray) -> float:
    """Pixel F of a binary mask against a label with cracks, computed here from scratch."""
    tp = float((predicted & label).sum())
    precision = tp / predicted.sum() if predicted.sum() else 1.0
    recall = tp / label.sum()
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def test_the_dashboard_lists_every_label_against_its_pre_annotation_as_recomputed(
    label_studio, rq_backend, project
):
    """Each label's F on the dashboard equals F recomputed from the RLEs of the annotation
    and of the prediction the annotator started from (as Label Studio stored them)."""
    wait_idle(rq_backend["url"], project["id"])
    url = f"{rq_backend['url']}/dashboard/data?project={project['id']}"
    edits = BACKEND.get(url, timeout=30).json()["edits"]
    checked = 0
    for edit in edits:
        if edit["prediction"] not in SEEN_PREDICTIONS:
            continue  # a re-score replaced the predictions while the label was posted
        annotation = label_studio.call("GET", f"/api/annotations/{edit['annotation']}")
        value = annotation["result"][0]
        h, w = value["original_height"], value["original_width"]
        label = decode_rle(value["value"]["rle"]).reshape(h, w, 4)[..., 3] > 0
        shown = decode_rle(SEEN_PREDICTIONS[edit["prediction"]]).reshape(h, w, 4)[..., 3] > 0
        assert edit["f"] == pytest.approx(f_of(shown, label), abs=1e-9), edit
        assert edit["scaled_distance"] is None or 0.0 <= edit["scaled_distance"] <= 1.0
        checked += 1
    assert checked >= 6, (checked, len(edits))
    page = BACKEND.get(f"{rq_backend['url']}/dashboard?project={project['id']}", timeout=60)
    assert page.status_code == 200 and page.text.count("data:image/png;base64,") == 3
    # the scoring job drew the map: every task still to label is on it, and opens
    drawn = BACKEND.get(url, timeout=30).json()["map"]
    remaining = {t["id"] for t in label_studio.tasks(project["id"]) if not is_labelled(t)}
    assert remaining <= {p["task"] for p in drawn["pool"]}, drawn
    opened = BACKEND.get(
        f"{rq_backend['url']}/dashboard/task?project={project['id']}&task={min(remaining)}",
        timeout=60,
    )
    assert opened.status_code == 200 and opened.text.count("data:image/png;base64,") == 3
    # Label Studio shows each remaining task's expected F (read off the project's curve of
    # F against distance) as its prediction score; the Data Manager filters and sorts by it
    per_task = BACKEND.get(url, timeout=30).json()["remaining"]["expected_f"]["per_task"]
    assert per_task and set(map(int, per_task)) == remaining
    for task in label_studio.tasks(project["id"]):
        if task["id"] in remaining:
            ours = [p for p in task["predictions"] if p["model_version"].startswith("crackal-")]
            assert len(ours) == 1, task["predictions"]
            assert abs(ours[0]["score"] - per_task[str(task["id"])]) <= 1.1e-3
    cut = float(np.median(list(per_task.values())))
    query = {
        "ordering": ["-tasks:predictions_score"],
        "filters": {
            "conjunction": "and",
            "items": [
                {
                    "filter": "filter:tasks:predictions_score",
                    "operator": "greater_or_equal",
                    "type": "Number",
                    "value": cut,
                }
            ],
        },
    }
    params = {"project": project["id"], "page_size": 1000, "query": json.dumps(query)}
    shown = [t["id"] for t in label_studio.call("GET", "/api/tasks", params=params)["tasks"]]
    listed = [per_task[str(t)] for t in shown if t in remaining]
    assert listed == sorted(listed, reverse=True) or np.all(np.diff(listed) <= 2.2e-3)
    assert {t for t in remaining if per_task[str(t)] >= cut + 1.1e-3} <= set(shown)
    assert all(per_task[str(t)] >= cut - 1.1e-3 for t in shown if t in remaining)
