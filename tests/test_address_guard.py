"""Hostile image URLs against the download path: internal addresses, redirects into them,
credentials sent where they must not go, and a drip-fed response. A real HTTP server on
loopback plays the attacker's host (allowed explicitly, as an operator would allow a LAN
storage host)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from backend.address_guard import refusal
from backend.image_source import ImageFetchError, fetch_image_bytes
from backend.label_studio import LabelStudio
from backend.settings import Settings

LS = "http://ls.invalid:8080"  # never contacted: Label Studio's own host, by name
SEEN: list[dict] = []


class Attacker(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        SEEN.append({"path": self.path, "auth": self.headers.get("Authorization")})
        if self.path.startswith("/redirect-to/"):
            self.send_response(302)
            self.send_header("Location", self.path[len("/redirect-to/") :])
            self.end_headers()
        elif self.path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the backend gave up, as it should
        else:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"not an image")


@pytest.fixture(scope="module")
def attacker():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def settings(**kw) -> Settings:
    return Settings(label_studio_url=LS, label_studio_api_key="k" * 40, **kw)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x.jpg",
        "http://localhost/x.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/x.jpg",
        "http://192.168.0.1/x.jpg",
        "http://[::1]/x.jpg",
        "http://[::ffff:127.0.0.1]/x.jpg",
        "http://0.0.0.0/x.jpg",
        "http://2130706433/x.jpg",  # 127.0.0.1 as one decimal number
        "http://0x7f.1/x.jpg",
    ],
)
def test_internal_addresses_are_refused(url):
    assert "private or reserved" in (refusal(url, settings()) or "")


def test_unresolvable_and_odd_urls_are_refused_with_a_reason():
    assert "cannot resolve" in refusal("http://no-such-host.invalid/x", settings())
    assert "scheme" in refusal("ftp://example.com/x", settings())
    assert "no host" in refusal("http:///x", settings())
    assert "invalid port" in refusal("http://example.com:99999/x", settings())


def test_label_studios_own_origin_and_allowed_hosts_pass():
    local = Settings(label_studio_url="http://127.0.0.1:8080")
    assert refusal("http://127.0.0.1:8080/data/upload/1/a.jpg", local) is None
    assert "private" in refusal("http://127.0.0.1:6379/", local)  # another port of its host
    assert "private" in refusal("https://127.0.0.1:8080/x", local)  # another scheme
    assert refusal("http://127.0.0.1:9000/b/k", settings(allowed_hosts=("127.0.0.1:9000",))) is None
    assert "private" in refusal(
        "http://127.0.0.1:9001/", settings(allowed_hosts=("127.0.0.1:9000",))
    )
    assert refusal("http://10.1.2.3/x", settings(allowed_hosts=("10.0.0.0/8",))) is None
    assert refusal("http://localhost/x", settings(allowed_hosts=("localhost",))) is None


def fetch(url: str, s: Settings) -> bytes:
    return fetch_image_bytes(url, s, requests.Session(), LabelStudio(s), task_id=1)


def test_a_redirect_into_an_internal_address_is_refused(attacker):
    s = settings(allowed_hosts=("127.0.0.1",))
    with pytest.raises(ImageFetchError, match=r"refused http://169\.254\.169\.254"):
        fetch(f"{attacker}/redirect-to/http://169.254.169.254/latest/meta-data/", s)
    with pytest.raises(ImageFetchError, match="private or reserved"):
        fetch(f"{attacker}/redirect-to/http://10.9.9.9/x", s)
    # without the allowance the attacker's (loopback) host itself is refused
    with pytest.raises(ImageFetchError, match="private or reserved"):
        fetch(f"{attacker}/x.jpg", settings())


def test_other_hosts_never_get_the_credentials(attacker):
    s = settings(allowed_hosts=("127.0.0.1",))
    SEEN.clear()
    assert fetch(f"{attacker}/a.jpg", s) == b"not an image"
    assert SEEN == [{"path": "/a.jpg", "auth": None}]


def test_a_drip_fed_download_ends_at_the_deadline(attacker):
    s = settings(allowed_hosts=("127.0.0.1",), fetch_deadline=1.5, request_timeout=5)
    start = time.monotonic()
    with pytest.raises(ImageFetchError, match=r"took longer than 1\.5 s"):
        fetch(f"{attacker}/drip", s)
    assert time.monotonic() - start < 1.5 + 5


def test_a_fifo_under_the_local_files_root_is_refused(tmp_path):
    import os

    fifo = tmp_path / "image.jpg"
    os.mkfifo(fifo)
    s = settings(local_files_root=tmp_path)
    with pytest.raises(ImageFetchError, match="not a regular file"):
        fetch(str(fifo), s)
