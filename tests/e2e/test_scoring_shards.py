"""A project's scoring spread over two real `crackal worker`s (rq, one Redis, one registry
folder): every task analysed by exactly one page, both workers took pages, the last pass
fetched no image again, and every task got exactly one prediction; scored again with
nothing changed, every prediction is kept as it is."""

from __future__ import annotations

import shutil

import pytest

from backend.prediction_label import labelled_version
from training.registry import Registry

from .conftest import Worker, backend_env, crackal_serve
from .helpers import BACKEND, make_project, wait_for

PAGE = 4  # tasks per page: 24 CFD images make 6 pages


@pytest.fixture(scope="module")
def two_workers(
    label_studio, trained_registry, base_train, base_val, redis_server, tmp_path_factory
):
    work = tmp_path_factory.mktemp("shards")
    # the base model alone: workers reconcile every project their registry knows at start
    shutil.copytree(
        trained_registry.root,
        work / "registry",
        ignore=shutil.ignore_patterns("projects", "labels"),
    )
    registry = Registry(work / "registry")
    env = {
        **backend_env(label_studio, registry, base_train, base_val, work),
        # a database of its own: the suite's other rq backend has another registry and cache
        "REDIS_URL": redis_server.url.rsplit("/", 1)[0] + "/1",
        "CRACKAL_SHARD_TASKS": str(PAGE),
    }
    workers = [Worker(env, work / f"worker-{i}.log") for i in range(2)]
    for w in workers:
        w.start()
    try:
        with crackal_serve(env, work) as b:
            yield b
    finally:
        for w in workers:
            w.stop()


def test_two_workers_score_one_project_each_task_once(
    label_studio, two_workers, crack_data, trained_registry
):
    paths = sorted((crack_data / "cfd" / "images").iterdir())[:24]
    project = make_project(
        label_studio, two_workers["url"], "shards", paths, trained_registry.current()
    )
    pid, tasks = project["id"], project["tasks"]

    def health_last() -> dict:
        return BACKEND.get(f"{two_workers['url']}/health", timeout=10).json()["jobs"]["last"]

    def finished(after: float = 0.0) -> dict | None:
        job = health_last().get(f"rescore:{pid}", {})
        done = job.get("state") == "finished" and job.get("started", 0) > after
        return job.get("result") if done else None

    result = wait_for(finished, 120, "the scoring job's record")
    pages = result["shards"]

    assert [p["page"] for p in pages] == [1, 2, 3, 4, 5, 6]
    assert all("error" not in p for p in pages), pages
    analysed = [t for p in pages for t in p["tasks"]]
    assert sorted(analysed) == sorted(t["id"] for t in tasks)  # each task in one page only
    assert len({p["worker"] for p in pages}) == 2, pages  # both workers took pages
    assert sum(p["fetched"] for p in pages) == len(tasks)
    assert result["fetched"] == 0  # the last pass found every image analysed
    assert result["predictions"] == len(tasks) and not result["errors"]
    shown = {}
    for task in label_studio.tasks(pid):
        ours = [p for p in task["predictions"] if labelled_version(p.get("model_version"))]
        assert len(ours) == 1, task["id"]
        shown[task["id"]] = ours[0]["id"]

    # nothing changed: a new scoring (as new tasks would start) imports and removes nothing
    started = health_last()[f"rescore:{pid}"]["started"]
    body = {"action": "TASKS_CREATED", "project": {"id": pid}}
    assert BACKEND.post(f"{two_workers['url']}/webhook", json=body, timeout=10).ok
    again = wait_for(lambda: finished(after=started), 180, "the second scoring's record")
    assert again["kept"] == len(tasks) and again["predictions"] == again["removed"] == 0
    assert again["fetched"] == 0
    for task in label_studio.tasks(pid):
        ours = [p["id"] for p in task["predictions"] if labelled_version(p.get("model_version"))]
        assert ours == [shown[task["id"]]]
