"""A job for a project Label Studio no longer has (deleted there while the registry still
knows it, so the next start queues its reconcile) ends with that status instead of failing
into retries; any other 404 still fails the job. A local server plays Label Studio."""

from __future__ import annotations

import json
from urllib.parse import urlparse

import pytest

from backend.job_functions import run_job
from backend.label_studio import LabelStudioError
from tests.peer_server import Peer, service_of

GONE, ODD = 99, 5  # a deleted project; a project whose task list answers 404
NOT_FOUND = json.dumps({"detail": "No Project matches the given query."}).encode()


class Projects(Peer):
    def do_GET(self) -> None:  # noqa: N802 (http.server names it)
        url = urlparse(self.path)
        if url.path.startswith("/api/tasks"):
            self.reply(404, NOT_FOUND)
        elif url.path.rstrip("/") == f"/api/projects/{ODD}":
            self.reply(200, json.dumps({"id": ODD, "title": "odd"}).encode())
        else:
            self.reply(404, NOT_FOUND)


@pytest.fixture(scope="module")
def service(tiny_registry, tmp_path_factory):
    with service_of(Projects, tiny_registry.root, tmp_path_factory.mktemp("missing")) as service:
        yield service


def test_a_job_for_a_project_gone_from_label_studio_ends_saying_so(service):
    for kind in ("reconcile", "idle", "retrain", "rescore"):
        assert run_job(kind, GONE, service) == {
            "status": "no such project in Label Studio",
            "project": GONE,
        }


def test_another_404_still_fails_the_job(service):
    with pytest.raises(LabelStudioError, match="HTTP 404") as caught:
        run_job("reconcile", ODD, service)
    assert caught.value.status == 404
