"""`crackal demo`: Label Studio + the backend + a worker on this machine, no Docker.

Starts Label Studio (from `.venv-ls`), Redis and `crackal worker` when `redis-server` is
installed (else the backend runs jobs itself), trains a base model if the registry is
empty, creates a brush project from a data folder, connects the backend, and prints the
address and login. Runs until interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from backend import local_servers as server
from backend.prediction_label import version_label
from selection.images import list_images
from training.data import find_samples, load
from training.fit import fit_version
from training.registry import Registry
from training.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]
CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="tag" toName="image"><Label value="crack" background="#ff0000"/></BrushLabels>
</View>"""


def positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run Label Studio, the backend and a worker, with a project")
    p.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("CRACK_DATA", REPO.parent / "shared" / "data")),
        help="the crack data folder",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=REPO / ".crackal-demo",
        help="registry, cache and Label Studio data (default: .crackal-demo)",
    )
    p.add_argument(
        "--images", type=positive, default=30, help="images in the demo project (at least 1)"
    )
    p.add_argument("--port", type=int, default=8080, help="Label Studio's port (0: any free)")
    p.add_argument("--backend-port", type=int, default=9090, help="the backend's (0: any free)")
    p.add_argument("--steps", type=int, help="base model training steps (default: 1200)")
    p.add_argument("--label-studio", type=Path, default=REPO / ".venv-ls" / "bin" / "label-studio")
    p.add_argument(
        "--exit-after-setup",
        action="store_true",
        help="stop everything once the project is scored (for tests)",
    )
    p.set_defaults(run=run)


def demo_images(data: Path, count: int) -> list[Path]:
    """A mix of unseen crack sets and non-crack photos, spread over each set."""
    sets = [name for name in ("cfd", "crack500", "gaps384", "bsds500") if (data / name).is_dir()]
    if not sets:
        raise ValueError(f"no crack sets in {data} (expected cfd, crack500, gaps384, bsds500)")
    images = {name: list_images(data / name) for name in sets}
    # shares split evenly, smallest set first: the larger ones make up what it cannot give
    shares, left = {}, count
    for i, name in enumerate(sorted(sets, key=lambda n: len(images[n]))):
        shares[name] = min(len(images[name]), -(-left // (len(sets) - i)))
        left -= shares[name]
    out: list[Path] = []
    for name in sets:
        found, share = images[name], shares[name]
        out += found[:: max(1, len(found) // max(share, 1))][:share]
    return out


def ensure_model(registry: Registry, data: Path, steps: int | None) -> str:
    if registry.current():
        return registry.current()
    print("registry is empty: training a base model on deepcrack/train (a few minutes)")
    config = TrainConfig.base(**({} if steps is None else {"steps": steps}))
    fit_version(
        registry,
        load(find_samples(data / "deepcrack" / "train")),
        load(find_samples(data / "deepcrack" / "val")),
        config=config,
        note="crackal demo base model",
    )
    return registry.current()


def run(args: argparse.Namespace) -> int:
    if not args.label_studio.exists():
        raise ValueError(
            f"Label Studio not found at {args.label_studio}: run "
            "./scripts/setup-services (or pass --label-studio)"
        )
    work = args.workdir.resolve()
    registry = Registry(work / "registry")
    version = ensure_model(registry, args.data, args.steps)
    with local_stack(
        args.label_studio, work, registry, args.data, args.port, args.backend_port
    ) as stack:
        project = create_project(
            stack.ls, stack.backend, stack.auth, demo_images(args.data, args.images), version
        )
        print(
            f"\nLabel Studio: {stack.ls.url}/projects/{project}/data  (login "
            f"{stack.ls.username} / {stack.ls.password})\nbackend: {stack.backend}  jobs: "
            f"{stack.jobs}\nlogs: {work}/*.log   Ctrl-C stops everything."
        )
        if args.exit_after_setup:
            return 0
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    return 0


@dataclass
class LocalStack:
    ls: server.LabelStudioServer
    backend: str  # the backend's URL
    auth: tuple[str, str]  # the backend's basic auth
    env: dict[str, str]  # the backend's and worker's environment
    jobs: str  # where jobs run, in words


@contextlib.contextmanager
def local_stack(
    label_studio: Path,
    work: Path,
    registry: Registry,
    data: Path,
    port: int = 0,
    backend_port: int = 0,
    extra_env: dict[str, str] | None = None,
) -> Iterator[LocalStack]:
    """Label Studio, Redis and `crackal worker` (when `redis-server` is installed; else the
    backend runs jobs itself) and the backend, all stopped when the block ends."""
    password = secrets.token_urlsafe(9)
    with contextlib.ExitStack() as stack:
        ls = stack.enter_context(
            server.label_studio(label_studio, work / "label-studio", port or None, password)
        )
        env = {
            **os.environ,
            "LABEL_STUDIO_URL": ls.url,
            "LABEL_STUDIO_API_KEY": ls.token,
            "CRACKAL_REGISTRY": str(registry.root),
            "CRACKAL_CACHE": str(work / "cache"),
            "CRACKAL_BASE_TRAIN": str(data / "deepcrack" / "train"),
            "CRACKAL_BASE_VAL": str(data / "deepcrack" / "val"),
            # the backend's own credentials; Label Studio gets them when it connects
            "BASIC_AUTH_USER": "crackal",
            "BASIC_AUTH_PASS": secrets.token_urlsafe(16),
            **(extra_env or {}),
        }
        jobs = "in the backend process"
        redis_binary = shutil.which("redis-server")
        if redis_binary:
            redis_server = server.RedisServer(redis_binary, work)
            redis_server.start()
            stack.callback(redis_server.stop)
            env["REDIS_URL"] = redis_server.url
            jobs = f"rq on {redis_server.url}"
            log = stack.enter_context(open(work / "worker.log", "a"))
            worker = subprocess.Popen(
                [sys.executable, "-m", "crackal", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            stack.callback(worker.terminate)
        backend_port = backend_port or server.free_port()
        backend = f"http://127.0.0.1:{backend_port}"
        stack.enter_context(
            server.running(
                [sys.executable, "-m", "crackal", "serve", "--port", str(backend_port)],
                env,
                work / "backend.log",
                f"{backend}/health",
                60,
            )
        )
        auth = (env["BASIC_AUTH_USER"], env["BASIC_AUTH_PASS"])
        yield LocalStack(ls, backend, auth, env, jobs)


def create_project(
    ls: server.LabelStudioServer,
    backend: str,
    auth: tuple[str, str],
    images: list[Path],
    version: str,
    title: str = "crackal demo",
) -> int:
    """Create the brush project, upload `images`, connect the backend, wait for the queue."""
    http = requests.Session()
    http.headers["Authorization"] = f"Token {ls.token}"
    project = http.post(
        f"{ls.url}/api/projects", timeout=60, json={"title": title, "label_config": CONFIG}
    ).json()["id"]
    ls.upload(project, ((p.name, p.read_bytes()) for p in images))
    http.post(
        f"{ls.url}/api/ml",
        timeout=120,
        json={
            "url": backend,
            "project": project,
            "title": "crackal",
            "is_interactive": False,
            "auth_method": "BASIC_AUTH",
            "basic_auth_user": auth[0],
            "basic_auth_pass": auth[1],
        },
    ).raise_for_status()
    print(f"scoring {len(images)} images with model {version} ...")

    def scored() -> bool:
        data = http.get(
            f"{ls.url}/api/tasks",
            timeout=60,
            params={"project": project, "page_size": 1000, "fields": "all"},
        ).json()
        tasks = data["tasks"] if isinstance(data, dict) else data
        label = version_label(version)
        return len(tasks) == len(images) and all(
            any(p.get("model_version") == label for p in t.get("predictions") or []) for t in tasks
        )

    server.wait_until(scored, 900, "the first scoring of the demo project")
    return project
