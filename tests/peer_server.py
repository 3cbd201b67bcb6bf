"""A local HTTP server playing Label Studio in unit tests: scripted answers, broken ones
included. The real Label Studio runs in the end-to-end tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from backend.label_studio import LabelStudio
from backend.service import Service
from backend.settings import Settings


class Peer(BaseHTTPRequestHandler):
    """A request handler with a one-call reply and no request log."""

    def reply(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def client_of(handler: type[Peer]) -> Iterator[LabelStudio]:
    """Our Label Studio client, talking to `handler` on a free local port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield LabelStudio(Settings(label_studio_url=url, label_studio_api_key="k" * 40))
    finally:
        server.shutdown()


@contextmanager
def service_of(handler: type[Peer], registry_root: Path, cache: Path) -> Iterator[Service]:
    """A backend service whose Label Studio is `handler`, on `registry_root`."""
    with client_of(handler) as client:
        yield Service(
            Settings(
                label_studio_url=client.url,
                label_studio_api_key="k" * 40,
                registry=registry_root,
                cache=cache,
            )
        )
