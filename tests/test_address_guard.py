"""Hostile image URLs against the download path: internal addresses, redirects into them,
credentials sent where they must not go, and a drip-fed response. A real HTTP server on
loopback plays the attacker's host (allowed explicitly, as an operator would allow a LAN
storage host). A patched `socket.getaddrinfo` plays DNS that rebinds a name between the
check and the connection."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from backend.address_guard import connect_refusal, refusal
from backend.guarded_connection import GuardedAdapter
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
        "http://[64:ff9b::a9fe:a9fe]/latest/",  # NAT64 of 169.254.169.254
        "http://[2002:7f00:1::]/x.jpg",  # 6to4 of 127.0.0.1
        "http://[::127.0.0.1]/x.jpg",  # IPv4-compatible
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


def fake_dns(monkeypatch, name: str, answers: list[str]) -> list[str]:
    """Make `name` resolve to answers[0] on the first look-up, answers[1] on the second,
    and so on (the last one from then on); returns the answers given."""
    real, given = socket.getaddrinfo, []

    def getaddrinfo(host, port, *args, **kwargs):
        if host != name:
            return real(host, port, *args, **kwargs)
        given.append(answers[min(len(given), len(answers) - 1)])
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (given[-1], port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return given


def test_a_name_rebound_after_the_check_is_not_connected_to(attacker, monkeypatch):
    port = attacker.rsplit(":", 1)[1]
    given = fake_dns(monkeypatch, "rebind.test", ["93.184.216.34", "127.0.0.1"])
    SEEN.clear()
    with pytest.raises(ImageFetchError, match=r"refused .*'rebind\.test' is at 127\.0\.0\.1"):
        fetch(f"http://rebind.test:{port}/x.jpg", settings())
    assert given == ["93.184.216.34", "127.0.0.1"]  # the check, then the connection's own
    assert SEEN == []  # the loopback listener got no request


def test_the_connection_check_follows_the_same_rules():
    s = settings(allowed_hosts=("10.0.0.0/8", "storage.lan", "nas.lan:9000"))
    assert connect_refusal("http", "ls.invalid", 8080, "127.0.0.1", s) is None  # LS itself
    assert "private" in connect_refusal("http", "ls.invalid", 8081, "127.0.0.1", s)
    assert connect_refusal("http", "Storage.LAN.", 80, "192.168.1.2", s) is None
    assert connect_refusal("http", "nas.lan", 9000, "192.168.1.3", s) is None
    assert "'nas.lan' is at 192.168.1.3" in connect_refusal("http", "nas.lan", 80, "192.168.1.3", s)
    assert connect_refusal("https", "a.example", 443, "10.2.3.4", s) is None
    assert connect_refusal("https", "a.example", 443, "93.184.216.34", s) is None
    assert "private" in connect_refusal("https", "a.example", 443, "::1", s)


def test_label_studios_own_loopback_origin_downloads_through_the_guard(attacker):
    s = Settings(label_studio_url=attacker, label_studio_api_key="k" * 40)
    session = requests.Session()
    session.proxies = {"http": "http://127.0.0.1:9"}  # ignored: never through a proxy
    SEEN.clear()
    got = fetch_image_bytes(f"{attacker}/data/upload/1/a.jpg", s, session, LabelStudio(s), 1)
    assert got == b"not an image"
    assert isinstance(session.get_adapter(attacker), GuardedAdapter)
    assert [seen["path"] for seen in SEEN] == ["/data/upload/1/a.jpg"]
    assert SEEN[0]["auth"]  # Label Studio's own route gets the credentials


@pytest.fixture(scope="module")
def tls_images(tmp_path_factory):
    """An HTTPS server on loopback with a certificate for the name images.test only;
    yields (port, certificate path, the SNI names it was sent)."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=images.test"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-addext", "subjectAltName=DNS:images.test", "-keyout", key, "-out", cert),
        ],
        check=True,
        capture_output=True,
    )
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port, cert, names
    server.shutdown()


def test_https_verifies_the_certificate_against_the_name_it_connects_for(tls_images, monkeypatch):
    port, cert, names = tls_images
    fake_dns(monkeypatch, "images.test", ["127.0.0.1"])
    fake_dns(monkeypatch, "other.test", ["127.0.0.1"])
    s = settings(allowed_hosts=("127.0.0.0/8",))
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # they would override verify
        monkeypatch.delenv(name, raising=False)
    session = requests.Session()
    session.verify = str(cert)
    names.clear()
    got = fetch_image_bytes(f"https://images.test:{port}/a.jpg", s, session, LabelStudio(s), 1)
    assert got == b"not an image" and names == ["images.test"]
    with pytest.raises(ImageFetchError, match="SSLError"):  # the certificate is not for it
        fetch_image_bytes(f"https://other.test:{port}/a.jpg", s, session, LabelStudio(s), 1)
    assert names[-1] == "other.test"
