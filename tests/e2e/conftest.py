"""A real Label Studio server, a trained model and `crackal serve`, for end-to-end tests.

Label Studio runs from its own virtualenv (`.venv-ls`, made by scripts/test; or
$LABEL_STUDIO_BIN) on a free loopback port, with SQLite in a temporary folder.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from training.data import find_samples, load
from training.fit import fit_version
from training.registry import Registry
from training.train import TrainConfig

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, seconds: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} died at start:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not up after {seconds} s:\n{log.read_text()[-3000:]}")


class LabelStudioAPI:
    """Just enough of the Label Studio API to drive a test like a user would."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Token {token}"

    def call(self, method: str, path: str, **kwargs):
        resp = self.http.request(method, self.url + path, timeout=120, **kwargs)
        assert resp.status_code < 400, f"{method} {path}: {resp.status_code} {resp.text[:500]}"
        return resp.json() if resp.content else None

    def tasks(self, project: int) -> list[dict]:
        data = self.call(
            "GET", "/api/tasks", params={"project": project, "page_size": 1000, "fields": "all"}
        )
        return data["tasks"] if isinstance(data, dict) else data


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    binary = Path(os.environ.get("LABEL_STUDIO_BIN", REPO / ".venv-ls" / "bin" / "label-studio"))
    if not binary.exists():
        message = f"Label Studio not installed at {binary} (scripts/test installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    data = tmp_path_factory.mktemp("label-studio")
    token = secrets.token_hex(20)
    port = free_port()
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        "LABEL_STUDIO_USERNAME": "admin@example.com",
        "LABEL_STUDIO_PASSWORD": "crackal-test",
        "LABEL_STUDIO_USER_TOKEN": token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "ML_BLOCK_LOCAL_IP": "false",
        "SSRF_PROTECTION_ENABLED": "false",
        "SENTRY_DSN": "",
        "LATEST_VERSION_CHECK": "false",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(data),
    }
    log = data / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(binary), "start", "--no-browser", "--internal-host", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=data,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 240, proc, log)
        yield LabelStudioAPI(f"http://127.0.0.1:{port}", token)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def trained_registry(crack_data, tmp_path_factory) -> Registry:
    """A real base model: a short training run on DeepCrack (enough to find cracks)."""
    registry = Registry(tmp_path_factory.mktemp("registry"))
    train = load(find_samples(crack_data / "deepcrack" / "train"))
    val = load(find_samples(crack_data / "deepcrack" / "val")[::3])
    fit_version(
        registry,
        train,
        val,
        config=TrainConfig(steps=150, eval_every=50),
        progress=False,
        note="e2e test base model",
    )
    return registry


@pytest.fixture(scope="session")
def base_train(real_subset) -> Path:
    """P for scoring: 60 DeepCrack training images."""
    return real_subset("deepcrack/train", 60)


@pytest.fixture(scope="session")
def backend(label_studio, trained_registry, base_train, tmp_path_factory):
    """`crackal serve` on a free port, configured like a deployment (environment only)."""
    port = free_port()
    work = tmp_path_factory.mktemp("backend")
    env = {
        **os.environ,
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.token,
        "CRACKAL_REGISTRY": str(trained_registry.root),
        "CRACKAL_BASE_TRAIN": str(base_train),
        "CRACKAL_CACHE": str(work / "cache"),
        "PYTHONUNBUFFERED": "1",
    }
    log = work / "backend.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "crackal", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 60, proc, log)
        yield {"url": f"http://127.0.0.1:{port}", "log": log, "env": env}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
