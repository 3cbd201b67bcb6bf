"""Deleting crackal's old predictions, several calls at once: a prediction already gone
counts as removed, and a Label Studio that refuses stops the deletes after a few calls.
A local server plays Label Studio; the real one deletes in the end-to-end tests."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backend.label_studio import DELETE_CALLS, LabelStudio, LabelStudioError
from backend.settings import Settings

GONE, REFUSED = range(1000, 1010), range(2000, 2100)  # prediction ids: 404, 500
SEEN: list[int] = []


class Predictions(BaseHTTPRequestHandler):
    def do_DELETE(self) -> None:
        pid = int(self.path.rstrip("/").rsplit("/", 1)[1])
        SEEN.append(pid)
        time.sleep(0.02)  # calls overlap, as they do against a real server
        status = 404 if pid in GONE else 500 if pid in REFUSED else 204
        body = b'{"detail": "no"}' if status != 204 else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def client():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Predictions)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    yield LabelStudio(Settings(label_studio_url=url, label_studio_api_key="k" * 40))
    server.shutdown()


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
