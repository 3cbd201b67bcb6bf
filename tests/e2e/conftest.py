"""A real Label Studio server, a trained model and `crackal serve`, for end-to-end tests.

Label Studio runs from its own virtualenv (`.venv-ls`, made by scripts/test; or
$LABEL_STUDIO_BIN) on a free loopback port, with SQLite in a temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from backend import local_servers as server
from tests.availability import unavailable
from tests.e2e.helpers import BACKEND_AUTH, S3_PORT
from training.data import find_samples, load
from training.fit import fit_version
from training.registry import Registry
from training.train import TrainConfig

REPO = Path(__file__).resolve().parents[2]


class LabelStudioAPI:
    """Just enough of the Label Studio API to drive a test like a user would. `token` is a
    personal access token: exchanged for an access token, again when that one expires."""

    def __init__(self, url: str, token: str, legacy_token: str = "") -> None:
        self.url = url
        self.token = token
        self.legacy_token = legacy_token
        self.http = requests.Session()
        self.refresh()

    def refresh(self) -> None:
        resp = requests.post(f"{self.url}/api/token/refresh/", json={"refresh": self.token})
        assert resp.status_code == 200, f"token refresh: {resp.status_code} {resp.text[:300]}"
        self.http.headers["Authorization"] = f"Bearer {resp.json()['access']}"

    def call(self, method: str, path: str, **kwargs):
        resp = self.http.request(method, self.url + path, timeout=120, **kwargs)
        if resp.status_code == 401:
            self.refresh()
            resp = self.http.request(method, self.url + path, timeout=120, **kwargs)
        assert resp.status_code < 400, f"{method} {path}: {resp.status_code} {resp.text[:500]}"
        return resp.json() if resp.content else None

    def tasks(self, project: int) -> list[dict]:
        data = self.call(
            "GET", "/api/tasks", params={"project": project, "page_size": 1000, "fields": "all"}
        )
        return data["tasks"] if isinstance(data, dict) else data


@pytest.fixture(scope="session")
def label_studio_binary() -> Path:
    binary = Path(os.environ.get("LABEL_STUDIO_BIN", REPO / ".venv-ls" / "bin" / "label-studio"))
    if not binary.exists():
        unavailable(f"Label Studio not installed at {binary} (scripts/setup-services installs it)")
    return binary


@pytest.fixture(scope="session")
def label_studio(label_studio_binary, tmp_path_factory):
    """Label Studio as 1.23 ships: personal access tokens only (legacy tokens disabled)."""
    data = tmp_path_factory.mktemp("label-studio")
    with server.label_studio(label_studio_binary, data, legacy_tokens=False) as ls:
        yield LabelStudioAPI(ls.url, ls.token, ls.legacy_token)


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
def base_val(crack_data, tmp_path_factory) -> Path:
    """A small validation set (images/ + masks/) for retraining: 12 DeepCrack val images."""
    root = tmp_path_factory.mktemp("val")
    for sub in ("images", "masks"):
        (root / sub).mkdir()
    for path in sorted((crack_data / "deepcrack" / "val" / "images").iterdir())[::5]:
        (root / "images" / path.name).symlink_to(path)
        mask = crack_data / "deepcrack" / "val" / "masks" / f"{path.stem}.png"
        (root / "masks" / mask.name).symlink_to(mask)
    return root


def backend_env(
    label_studio, registry: Registry, base_train: Path, base_val: Path, work: Path
) -> dict[str, str]:
    return {
        **os.environ,
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.token,
        "CRACKAL_REGISTRY": str(registry.root),
        "CRACKAL_BASE_TRAIN": str(base_train),
        "CRACKAL_CACHE": str(work / "cache"),
        "CRACKAL_BASE_VAL": str(base_val),
        "CRACKAL_ADAPT_STEPS": "20",
        "CRACKAL_PROMOTE": "always",
        # the suite checks the farthest-first order and its expected-F scores by name; every
        # order the queue offers is tested in tests/test_queue_order.py
        "CRACKAL_STRATEGY": "farthest",
        # no spontaneous idle retrains in the suite's shared backends: each would hold the
        # job runner for minutes (test_hostile_inputs tests the idle delay on its own backend)
        "CRACKAL_IDLE_DELAY": "86400",
        # quick retrains also where CUDA is present (auto would pick the thorough preset), and
        # an idle job's thorough pass (test_hostile_inputs) trains for 3 s, not 15 minutes
        "CRACKAL_ADAPTATION": "quick",
        "CRACKAL_THOROUGH_MINUTES": "0.05",
        # masks on torch: each rq job's process would check its onnxruntime export against
        # torch again (tests/test_onnx.py covers onnxruntime; the hostile project uses it)
        "CRACKAL_ONNX": "0",
        "CRACKAL_ALLOWED_HOSTS": f"127.0.0.1:{S3_PORT}",
        "BASIC_AUTH_USER": BACKEND_AUTH[0],
        "BASIC_AUTH_PASS": BACKEND_AUTH[1],
        "PYTHONUNBUFFERED": "1",
    }


@contextlib.contextmanager
def crackal_serve(env: dict[str, str], work: Path):
    port = server.free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "crackal", "serve", "--port", str(port)]
    with server.running(cmd, env, work / "backend.log", f"{url}/health", 60, cwd=REPO):
        yield {"url": url, "log": work / "backend.log", "env": env}


@pytest.fixture(scope="session")
def backend(label_studio, trained_registry, base_train, base_val, tmp_path_factory):
    """`crackal serve` without Redis: jobs run on a thread of the backend."""
    work = tmp_path_factory.mktemp("backend")
    env = backend_env(label_studio, trained_registry, base_train, base_val, work)
    with crackal_serve(env, work) as b:
        yield b


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server not installed (scripts/setup-services installs it)")
    r = server.RedisServer(binary, tmp_path_factory.mktemp("redis"))
    r.start()
    yield r
    r.stop()


class Worker:
    """`crackal worker` (with its scheduler) as a process group that a test may kill and
    restart. rq runs each job in a process group of its own: kill that by its pid."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log, self.proc = env, log, None

    def start(self, *args: str) -> None:
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "crackal", "worker", *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL to the worker and its scheduler."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(20)

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            self.proc.wait(20)


@pytest.fixture(scope="session")
def rq_backend(
    label_studio, trained_registry, base_train, base_val, redis_server, tmp_path_factory
):
    """`crackal serve` with REDIS_URL, and one `crackal worker` running its jobs."""
    work = tmp_path_factory.mktemp("rq-backend")
    env = {
        **backend_env(label_studio, trained_registry, base_train, base_val, work),
        "REDIS_URL": redis_server.url,
    }
    worker = Worker(env, work / "worker.log")
    worker.start()
    try:
        with crackal_serve(env, work) as b:
            yield {**b, "worker": worker, "redis": redis_server}
    finally:
        worker.stop()
