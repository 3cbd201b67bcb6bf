"""Deleting crackal's old predictions, several calls at once: a prediction already gone
counts as removed, and a Label Studio that refuses stops the deletes after a few calls.
A local server plays Label Studio; the real one deletes in the end-to-end tests."""

from __future__ import annotations

import time

import pytest

from backend.label_studio import DELETE_CALLS, LabelStudioError
from tests.peer_server import Peer, client_of

GONE, REFUSED = range(1000, 1010), range(2000, 2100)  # prediction ids: 404, 500
SEEN: list[int] = []


class Predictions(Peer):
    def do_DELETE(self) -> None:  # noqa: N802 (http.server names it)
        pid = int(self.path.rstrip("/").rsplit("/", 1)[1])
        SEEN.append(pid)
        time.sleep(0.02)  # calls overlap, as they do against a real server
        status = 404 if pid in GONE else 500 if pid in REFUSED else 204
        self.reply(status, b'{"detail": "no"}' if status != 204 else b"")


@pytest.fixture(scope="module")
def client():
    with client_of(Predictions) as ours:
        yield ours


def test_every_prediction_is_deleted_and_one_already_gone_counts(client):
    SEEN.clear()
    ids = [*range(1, 31), *GONE]
    assert client.delete_predictions(ids) == len(ids)
    assert sorted(SEEN) == sorted(ids)  # each exactly once


def test_a_refusing_label_studio_costs_a_few_calls_not_one_per_prediction(client):
    SEEN.clear()
    with pytest.raises(LabelStudioError, match="HTTP 500"):
        client.delete_predictions(list(REFUSED))
    # the calls under way (label-studio-sdk tries a 500 three times), not all 100 (300 tries)
    assert 1 <= len(SEEN) <= 3 * 2 * DELETE_CALLS
