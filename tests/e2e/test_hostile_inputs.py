"""A project full of broken and hostile inputs, with auth on, on rq with two workers:
every bad task, image and annotation costs only itself, with its reason shown.

Tasks: a malformed URL, a NUL-byte path, an internal address (a loopback listener that
must receive nothing), a public-looking URL redirecting to it, a drip-fed download, a
0-byte file, a truncated JPEG, beside good ones including a 16-bit TIFF and a 30 MP
photo. Annotations: a malformed RLE, an RLE bomb, a null value, a mask of the wrong size,
beside two good labels. Fewer labels than the threshold: they train after the idle delay,
on a second project at the same time as on this one, each into its own model line.
"""

from __future__ import annotations

import http.server
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend import local_servers as server
from backend.prediction_label import version_label
from tests.availability import unavailable

from .conftest import REPO, Worker, backend_env, crackal_serve
from .helpers import BACKEND, BRUSH_CONFIG, brush_annotation, connect, wait_for

IDLE_DELAY = 15


class Listener:
    """A loopback TCP port that records every connection made to it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections: list[tuple[str, int]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            conn, peer = self.sock.accept()
            self.connections.append(peer)
            conn.close()


def public_server(folder: Path, listener_port: int) -> http.server.ThreadingHTTPServer:
    """An image host the operator allowed (CRACKAL_ALLOWED_HOSTS): files of `folder`, a
    redirect into the internal listener and a drip-fed download."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path == "/redirect.jpg":
                self.send_response(302)
                self.send_header("Location", f"http://127.0.0.1:{listener_port}/secret.jpg")
                self.end_headers()
            elif self.path == "/drip.jpg":
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                try:
                    for _ in range(120):
                        self.wfile.write(b"\xff")
                        self.wfile.flush()
                        time.sleep(1)
                except OSError:
                    pass  # the backend gave up: as it should
            else:
                super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


class PeakMemory:
    """The largest resident memory of any process below the given roots, sampled."""

    def __init__(self) -> None:
        self.roots: list[int] = []
        self.peak = 0
        self.where = ""  # the process that reached the peak, and when
        threading.Thread(target=self._sample, daemon=True).start()

    def _tree(self) -> set[int]:
        parents = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                parents[int(stat.parent.name)] = int(fields[1])
            except (OSError, ValueError, IndexError):
                continue
        found = set(self.roots)
        for _ in range(4):
            found |= {p for p, parent in parents.items() if parent in found}
        return found

    def _sample(self) -> None:
        while True:
            for pid in self._tree():
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:") and int(line.split()[1]) * 1024 > self.peak:
                            self.peak = int(line.split()[1]) * 1024
                            command = Path(f"/proc/{pid}/cmdline").read_bytes()
                            self.where = (
                                f"pid {pid} at {time.strftime('%H:%M:%S')}: "
                                + (command.replace(b"\0", b" ").decode(errors="replace")[:200])
                            )
                except OSError:
                    continue
            time.sleep(0.2)


@pytest.fixture(scope="module")
def hosts(crack_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("public")
    cfd = sorted((crack_data / "cfd" / "images").iterdir())
    good = cfd[:8]
    for path in good:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "zero.jpg").write_bytes(b"")
    data = good[0].read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    gray = np.asarray(Image.open(good[5]).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(gray).save(folder / "deep.tif")  # 16-bit grayscale
    Image.open(good[6]).resize((6400, 4700)).save(folder / "huge.jpg", quality=85)  # 30 MP
    listener = Listener()
    httpd = public_server(folder, listener.port)
    yield {"folder": folder, "good": good, "listener": listener, "port": httpd.server_port}
    httpd.shutdown()


@pytest.fixture(scope="module")
def hostile_backend(label_studio, trained_registry, base_train, base_val, hosts, tmp_path_factory):
    work = tmp_path_factory.mktemp("hostile-backend")
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server not installed (scripts/setup-services installs it)")
    redis = server.RedisServer(binary, work)
    redis.start()
    env = {
        **backend_env(label_studio, trained_registry, base_train, base_val, work),
        "REDIS_URL": redis.url,
        "CRACKAL_ALLOWED_HOSTS": f"127.0.0.1:{hosts['port']}",
        "CRACKAL_FETCH_DEADLINE": "5",
        "CRACKAL_IDLE_DELAY": str(IDLE_DELAY),
        "CRACKAL_RETRAIN_THRESHOLD": "100",
        "CRACKAL_LOCAL_FILES_ROOT": str(work),
        "CRACKAL_ONNX": "1",  # the 30 MP photo's masks on onnxruntime, as served by default
        "OMP_NUM_THREADS": "1",  # two workers on a 2-core machine: one thread each (README)
    }
    memory = PeakMemory()
    workers = [Worker(env, work / f"worker-{i}.log") for i in range(2)]
    for worker in workers:
        worker.start()
        memory.roots.append(worker.proc.pid)
    try:
        with crackal_serve(env, work) as b:
            yield {**b, "memory": memory, "redis": redis}
    finally:
        for worker in workers:
            worker.stop()
        redis.stop()


def make(ls, title: str, urls: dict[str, str]) -> tuple[int, dict[str, int]]:
    proj = ls.call("POST", "/api/projects", json={"title": title, "label_config": BRUSH_CONFIG})
    ls.call(
        "POST",
        f"/api/projects/{proj['id']}/import",
        json=[{"image": url, "name": name} for name, url in urls.items()],
    )
    ids = {t["data"]["name"]: t["id"] for t in ls.tasks(proj["id"])}
    return proj["id"], ids


@pytest.fixture(scope="module")
def projects(label_studio, hostile_backend, hosts, trained_registry, crack_data):
    pub = f"http://127.0.0.1:{hosts['port']}"
    good = {f"good-{i}": f"{pub}/{p.name}" for i, p in enumerate(hosts["good"][:5])}
    good |= {"deep-tiff": f"{pub}/deep.tif", "30mp": f"{pub}/huge.jpg"}
    bad = {
        "malformed-url": "http://[x",
        "nul-path": "/srv/images/a\u0000b.jpg",
        "internal": f"http://127.0.0.1:{hosts['listener'].port}/secret.jpg",
        "redirect": f"{pub}/redirect.jpg",
        "drip": f"{pub}/drip.jpg",
        "zero-bytes": f"{pub}/zero.jpg",
        "truncated": f"{pub}/truncated.jpg",
    }
    a, a_ids = make(label_studio, "hostile", good | bad)
    # Label Studio's annotation API refuses a result whose value is null (HTTP 500), but an
    # import takes it: a task that arrives labelled so.
    null = brush_annotation(crack_data / "cfd" / "masks" / f"{hosts['good'][7].stem}.png")
    null["result"][0]["value"] = None
    label_studio.call(
        "POST",
        f"/api/projects/{a}/import",
        json=[
            {
                "data": {"image": f"{pub}/{hosts['good'][7].name}", "name": "null-value"},
                "annotations": [null],
            }
        ],
    )
    a_ids["null-value"] = next(
        t["id"] for t in label_studio.tasks(a) if t["data"]["name"] == "null-value"
    )
    b, b_ids = make(
        label_studio,
        "neighbour",
        {f"b-{i}": f"{pub}/{p.name}" for i, p in enumerate(hosts["good"][5:8])},
    )
    for pid in (a, b):
        connect(label_studio, pid, hostile_backend["url"])
    label = version_label(trained_registry.current())

    def scored():
        tasks = label_studio.tasks(a) + label_studio.tasks(b)
        done = [t for t in tasks if any(p["model_version"] == label for p in t["predictions"])]
        return len(done) >= len(good) + len(b_ids)

    wait_for(scored, 600, "every good task of both projects to get a prediction")
    return {"a": a, "a_ids": a_ids, "good": good, "bad": bad, "b": b, "b_ids": b_ids}


def status_text(hostile_backend) -> str:
    return subprocess.run(
        [sys.executable, "-m", "crackal", "status", "--url", hostile_backend["url"]],
        capture_output=True,
        text=True,
        check=True,
        env=hostile_backend["env"],
        cwd=REPO,
    ).stdout


def test_every_good_task_is_predicted_and_every_bad_one_skipped_with_its_reason(
    label_studio, hostile_backend, projects, hosts
):
    tasks = {t["id"]: t for t in label_studio.tasks(projects["a"])}
    ids = projects["a_ids"]
    for name in projects["good"]:
        assert tasks[ids[name]]["predictions"], f"{name} got no prediction"
    huge = next(p for p in tasks[ids["30mp"]]["predictions"])["result"][0]
    assert (huge["original_width"], huge["original_height"]) == (6400, 4700)
    for name in projects["bad"]:
        assert not tasks[ids[name]]["predictions"], f"{name} got a prediction"
    assert hosts["listener"].connections == []  # neither directly nor by the redirect

    view = BACKEND.get(f"{hostile_backend['url']}/health", timeout=10).json()["projects"]
    skipped = view[str(projects["a"])]["skipped_tasks"]
    assert set(skipped) == {str(ids[n]) for n in projects["bad"]}, skipped
    text = status_text(hostile_backend)
    for name in projects["bad"]:
        assert f"task {ids[name]}: " in text
    print(text)


def annotation(result: dict) -> dict:
    return {"result": [result]}


def test_labels_below_the_threshold_train_when_idle_bad_ones_alone_skipped_both_projects_at_once(
    label_studio, hostile_backend, projects, hosts, crack_data, trained_registry
):
    ls, a, b, ids = label_studio, projects["a"], projects["b"], projects["a_ids"]
    masks = crack_data / "cfd" / "masks"
    good = hosts["good"]
    base = trained_registry.current()
    # the 30 MP photo was predicted at full resolution above; the retrains' re-scores need
    # not predict it again with every new version
    ls.call("DELETE", f"/api/tasks/{ids['30mp']}")

    def idle_job(pid: int) -> dict:
        last = BACKEND.get(f"{hostile_backend['url']}/health", timeout=10).json()["jobs"]["last"]
        return last.get(f"idle:{pid}", {})

    # connecting armed each project's idle deadline (labels lost while Redis was down would
    # train then): with no usable label yet (a's null-value label), its job trains nothing
    for pid in (a, b):
        armed = wait_for(
            lambda p=pid: (lambda j: j if j.get("state") == "finished" else None)(idle_job(p)),
            120,
            "the idle job armed at /setup",
        )
        assert armed["result"]["status"] in ("no labels yet", "no usable labels"), armed
    labelled = {
        "a": [ids["good-0"], ids["good-1"]],
        "b": [projects["b_ids"]["b-0"], projects["b_ids"]["b-1"]],
    }
    for tid, path in zip(labelled["a"], good[:2], strict=True):
        ls.call(
            "POST",
            f"/api/tasks/{tid}/annotations",
            json=brush_annotation(masks / f"{path.stem}.png"),
        )
    for tid, path in zip(labelled["b"], good[5:7], strict=True):
        ls.call(
            "POST",
            f"/api/tasks/{tid}/annotations",
            json=brush_annotation(masks / f"{path.stem}.png"),
        )
    proper = brush_annotation(masks / f"{good[2].stem}.png")["result"][0]
    broken = {
        "good-2": {**proper, "value": {**proper["value"], "rle": [1, 2, 3]}},  # malformed
        "good-3": {  # 7 bytes claiming ~2^31 values
            **proper,
            "value": {**proper["value"], "rle": [0x7F, 0xFF, 0xFF, 0xFF, 0xE7, 0x3F, 0xFF]},
        },
        "deep-tiff": {**proper, "original_width": 960, "original_height": 640},  # wrong size
    }
    for name, result in broken.items():
        ls.call("POST", f"/api/tasks/{ids[name]}/annotations", json=annotation(result))
    t_labelled = time.time()

    def finished(pid):
        job = idle_job(pid)
        done = job.get("state") in ("finished", "failed") and job["started"] > t_labelled
        return job if done else None

    jobs = {
        k: wait_for(lambda p=pid: finished(p), 600, f"project {k}'s idle retrain")
        for k, pid in (("a", a), ("b", b))
    }
    for job in jobs.values():
        assert job["state"] == "finished", job
        assert job["started"] >= t_labelled + IDLE_DELAY - 2  # after the idle delay, not before
        assert job["result"]["labels"] == 2 and job["result"]["promoted"], job["result"]
        # then, labelling still paused, a thorough pass on the same labels: every layer
        thorough = job["result"]["thorough"]
        quick = job["result"]["version"]
        assert thorough["status"] == "thorough pass" and thorough["labels"] == 2, thorough
        assert thorough["parent"] == quick and thorough["promoted"]  # CRACKAL_PROMOTE=always
        assert thorough["serving"] == thorough["version"] and thorough["steps"] >= 1
        encoders = {
            trained_registry.meta(v)["encoder_sha256"] for v in (quick, thorough["version"])
        }
        assert len(encoders) == 2
    projects_view = BACKEND.get(f"{hostile_backend['url']}/health", timeout=10).json()["projects"]
    for pid in (a, b):
        assert projects_view[str(pid)]["last_trained"]["preset"] == "thorough"
    # the two projects trained at once, on the two workers
    assert jobs["a"]["started"] < jobs["b"]["ended"] and jobs["b"]["started"] < jobs["a"]["ended"]

    skipped = jobs["a"]["result"]["skipped"]
    assert set(skipped) == {str(ids[n]) for n in [*broken, "null-value"]}, skipped
    assert "RLE is shorter than its header" in skipped[str(ids["good-2"])]
    assert "expected 480x320x4" in skipped[str(ids["good-3"])]  # refused from its header
    assert "without an RLE value" in skipped[str(ids["null-value"])]
    assert "960x640, the image is 480x320" in skipped[str(ids["deep-tiff"])]
    assert jobs["b"]["result"]["skipped"] == {}
    for k, pid in (("a", a), ("b", b)):
        version = trained_registry.current(pid)
        added = {
            r["image"].split(".")[0]
            for r in trained_registry.meta(version)["training"]["added_images"]
        }
        assert added == {f"task-{t}" for t in labelled[k]}
        assert version == jobs[k]["result"]["thorough"]["version"]
    assert trained_registry.current() == base  # the shared base model did not move
    assert trained_registry.current(a) != trained_registry.current(b)

    text = status_text(hostile_backend)
    for name in [*broken, "null-value"]:
        assert f"label {ids[name]}: " in text
    peak = hostile_backend["memory"].peak
    memory = hostile_backend["memory"]
    (Path(hostile_backend["log"]).parent / "peak-worker-memory.txt").write_text(
        f"{peak}\n{memory.where}\n"
    )
    # 2 GB (the issue's bound): measured 1,268 MiB here (2,037 MiB before the extractor took
    # one image per pass and resized in uint8); ~0.9 GB of it is imports and the model
    assert peak < 2e9, memory.where
    print(text, f"peak worker memory {hostile_backend['memory'].peak / 2**20:.0f} MiB")
