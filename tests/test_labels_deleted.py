"""Every label of a project deleted: the threshold fitted on them stops serving, through the
job path the worker runs, and the pool is re-scored at the version's own threshold. A local
server plays a Label Studio project with tasks and no labels."""

from __future__ import annotations

import json
import threading
from urllib.parse import urlparse

import pytest

from backend.job_functions import run_job
from backend.pool_store import PoolStore
from backend.project_lock import project_lock
from backend.project_threshold import (
    forget_threshold,
    load_threshold,
    project_threshold,
    save_threshold,
)
from tests.peer_server import Peer, service_of

PROJECT = 7
CONFIG = (
    '<View><Image name="img" value="$photo"/><BrushLabels name="paint" toName="img">'
    '<Label value="Crack"/></BrushLabels></View>'
)


class EmptiedProject(Peer):
    def do_GET(self) -> None:  # noqa: N802 (http.server names it)
        url = urlparse(self.path)
        if url.path.startswith("/api/tasks"):
            self.reply(200, json.dumps({"tasks": [], "total": 0}).encode())
        elif url.path.rstrip("/") == f"/api/projects/{PROJECT}":
            self.reply(
                200,
                json.dumps({"id": PROJECT, "title": "emptied", "label_config": CONFIG}).encode(),
            )
        else:
            self.reply(404, b"{}")

    def do_PATCH(self) -> None:  # noqa: N802 (the re-score sets the project's task order)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.reply(200, json.dumps({"id": PROJECT, "label_config": CONFIG}).encode())


@pytest.fixture(scope="module")
def service(tiny_registry, tmp_path_factory):
    cache = tmp_path_factory.mktemp("emptied")
    with service_of(EmptiedProject, tiny_registry.root, cache) as service:
        yield service


@pytest.mark.parametrize("kind", ["idle", "retrain", "reconcile"])
def test_a_threshold_fitted_on_labels_since_deleted_stops_serving(service, kind):
    registry = service.settings.registry
    version = service.holder.registry.current(PROJECT)
    save_threshold(registry, PROJECT, version, 0.42, 5, reason="fitted on 5 labels")
    assert project_threshold(registry, PROJECT, version) == 0.42
    result = run_job(kind, PROJECT, service)
    assert result["status"] == "no labels yet"
    assert result["threshold"] == "the version's own again"
    assert project_threshold(registry, PROJECT, version) is None
    assert load_threshold(registry, PROJECT)["reason"] == "no labels"
    again = run_job(kind, PROJECT, service)  # nothing left to forget: nothing re-scored
    assert again["status"] == "no labels yet" and "threshold" not in again


def test_a_project_without_labels_or_threshold_returns_at_once_without_the_lock(service):
    never = PROJECT + 1  # no threshold recorded: the job must not wait for the project lock
    done: dict = {}
    job = threading.Thread(target=lambda: done.update(run_job("idle", never, service)))
    with project_lock(service.settings.registry, never, wait=1.0):
        job.start()
        job.join(30)
        finished_while_locked = not job.is_alive()
    job.join()
    assert finished_while_locked and done["status"] == "no labels yet"


def test_a_scoring_stopped_half_way_is_finished_by_the_next_job_but_not_beside_one(service):
    """A scoring that stopped before its last page leaves a note: an idle job with no label
    to train on scores the pool again and the note goes; while another job of the project
    holds its lock (a scoring under way leaves the same note), the idle job returns at once."""
    registry = service.settings.registry
    forget_threshold(registry, PROJECT, "test")
    store = PoolStore(registry, PROJECT)
    store.begin_pages()
    done: dict = {}
    job = threading.Thread(target=lambda: done.update(run_job("idle", PROJECT, service)))
    with project_lock(registry, PROJECT, wait=1.0):
        job.start()
        job.join(30)
        finished_while_locked = not job.is_alive()
    job.join()
    assert finished_while_locked and done == {"status": "no labels yet", "project": PROJECT}
    assert store.pages_unfinished()

    again = run_job("idle", PROJECT, service)
    assert again["status"] == "no labels yet" and "rescored" in again
    assert not store.pages_unfinished()
