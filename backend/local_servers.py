"""Local servers for the demo, the end-to-end tests and the benchmarks, on loopback only:
Label Studio from its own virtualenv (SQLite in a data folder, an admin user with a known
API token, the settings a backend on 127.0.0.1 needs; label-studio 1.23) and redis-server
(no persistence)."""

from __future__ import annotations

import contextlib
import itertools
import mimetypes
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, seconds: float, what: str) -> None:
    """Call `predicate` until it returns true without raising; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {seconds:.0f} s")


def wait_until_up(url: str, seconds: float, proc: subprocess.Popen, log: Path) -> None:
    """Poll `url` until it answers 200; fail early, with the log's tail, if `proc` dies."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited at start:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{url} not up after {seconds:.0f} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def running(
    cmd: list[str],
    env: dict[str, str],
    log: Path,
    health_url: str,
    start_seconds: float,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen]:
    """Start a server process logging to `log`, wait for `health_url`, stop it afterwards."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        wait_until_up(health_url, start_seconds, proc, log)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class LabelStudioServer:
    url: str
    token: str  # the admin's API key: a personal access token, or a legacy token
    username: str
    password: str
    log: Path
    legacy_token: str  # refused by Label Studio when legacy tokens are disabled

    def upload(
        self, project: int, images: Iterable[tuple[str, bytes]], per_request: int = 50
    ) -> None:
        """Import (file name, image bytes) pairs as tasks of `project`, `per_request` files a
        request (Django refuses more than 100); holds one request's files at a time."""
        images = iter(images)
        with requests.Session() as http:
            http.headers["Authorization"] = f"Token {self.token}"
            while chunk := list(itertools.islice(images, per_request)):
                files = {
                    f"f{i}": (name, data, mimetypes.guess_type(name)[0] or "image/jpeg")
                    for i, (name, data) in enumerate(chunk)
                }
                http.post(
                    f"{self.url}/api/projects/{project}/import", files=files, timeout=600
                ).raise_for_status()


def personal_access_token(url: str, legacy_token: str) -> str:
    """Create the admin's personal access token (a JWT refresh token), then disable legacy
    tokens for the organisation, as Label Studio 1.23 ships by default."""
    http = requests.Session()
    http.headers["Authorization"] = f"Token {legacy_token}"
    answers: list[requests.Response] = []

    def created() -> bool:  # /health answers while the last migrations still run
        answers.append(http.post(f"{url}/api/token/", timeout=30))
        return answers[-1].status_code == 201

    try:
        wait_until(created, 180, "the personal access token route")
    except RuntimeError:
        last = answers[-1] if answers else None
        detail = f"HTTP {last.status_code} {last.text[:300]}" if last is not None else ""
        raise RuntimeError(f"no personal access token: {detail}") from None
    token = answers[-1].json()["token"]
    resp = http.post(
        f"{url}/api/jwt/settings",
        json={"api_tokens_enabled": True, "legacy_api_tokens_enabled": False},
        timeout=30,
    )
    resp.raise_for_status()
    return token


@contextlib.contextmanager
def label_studio(
    binary: Path,
    data: Path,
    port: int | None = None,
    password: str | None = None,
    legacy_tokens: bool = True,
) -> Iterator[LabelStudioServer]:
    """A Label Studio server on 127.0.0.1 with its data in `data`; stopped on exit. With
    `legacy_tokens` False the organisation accepts only personal access tokens and
    `token` is the admin's."""
    data.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    token = secrets.token_hex(20)
    password = password or secrets.token_urlsafe(12)
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        "LABEL_STUDIO_USERNAME": "admin@example.com",
        "LABEL_STUDIO_PASSWORD": password,
        "LABEL_STUDIO_USER_TOKEN": token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        # let it call a backend on 127.0.0.1, and never phone home
        "ML_BLOCK_LOCAL_IP": "false",
        "SSRF_PROTECTION_ENABLED": "false",
        "SENTRY_DSN": "",
        "LATEST_VERSION_CHECK": "false",
    }
    url = f"http://127.0.0.1:{port}"
    log = data / "label-studio.log"
    cmd = [str(binary), "start", "--no-browser", "--internal-host", "127.0.0.1", "-p", str(port)]
    with running(cmd, env, log, f"{url}/health", 300, cwd=data):
        key = token if legacy_tokens else personal_access_token(url, token)
        yield LabelStudioServer(url, key, "admin@example.com", password, log, token)


class RedisServer:
    """A redis-server on a free loopback port, without persistence; stop() and start() may
    be called again (fault tests)."""

    def __init__(self, binary: str, work: Path) -> None:
        self.binary, self.work = binary, work
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        from redis import Redis

        cmd = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no"]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, cwd=self.work)
        client = Redis.from_url(self.url)
        wait_until(client.ping, 20, "redis-server")

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
