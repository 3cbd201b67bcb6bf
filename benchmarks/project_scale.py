"""Does a request cost what its own tasks cost, and does scoring stay bounded, as a project
grows? Against a real Label Studio on this machine, with the backend's `Service` in this
process (what `crackal serve` and `crackal worker` run).

Projects of --sizes tasks (default 40, 500, 2000) hold distinct real images: the shared
crack sets' images and their mirror images and rotations (eight variants of each photo,
so every task has its own content hash and nothing is cached by accident). Printed per
project:
- the scoring job (fetch, embed, predict masks, fit P u S, import, order the queue),
  cold (empty feature and mask caches) and warm (same images, same model), and this
  process's peak resident memory during each;
- `/predict` of one 448 x 448 task of the project (Label Studio's call when an annotator
  opens a task): median and p90 over --requests calls, each a different task, its image
  fetched from Label Studio, scored with the project's stored fit; the ratio of the
  largest project's median to the smallest's.

    .venv/bin/python benchmarks/project_scale.py --registry REG [--sizes 40 500 2000]

Needs Label Studio in .venv-ls (./scripts/setup-services) and a registry with a model.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import requests
from PIL import Image

from backend import local_servers as server
from backend.service import Service
from backend.settings import Settings
from selection.images import list_images

REPO = Path(__file__).resolve().parents[1]
CONFIG = (
    '<View><Image name="image" value="$image"/><BrushLabels name="tag" toName="image">'
    '<Label value="crack"/></BrushLabels></View>'
)
VARIANTS = (
    None,
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_270,
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
)
PREDICT_SIDE = 448
PREDICT_TASKS = 12  # 448 x 448 tasks in every project, for /predict


def distinct_images(sources: list[Path], count: int, offset: int = 0) -> Iterator[bytes]:
    """`count` JPEGs, each a distinct variant of a real image (variants cycle slowest)."""
    for k in range(offset, offset + count):
        variant, path = VARIANTS[(k // len(sources)) % len(VARIANTS)], sources[k % len(sources)]
        with Image.open(path) as img:
            img = img.convert("RGB")
            img = img.transpose(variant) if variant is not None else img
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=92)
            yield buf.getvalue()


def square(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as img:
        buf = io.BytesIO()
        img.convert("RGB").resize((PREDICT_SIDE, PREDICT_SIDE)).save(buf, "JPEG", quality=92)
        return buf.getvalue()


class PeakRss:
    """This process's peak resident memory while the block runs (sampled every 50 ms)."""

    def __enter__(self) -> PeakRss:
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.peak = max(self.peak, int(line.split()[1]) * 1024)
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def make_project(ls: server.LabelStudioServer, size: int, offset: int, sources) -> int:
    project = requests.post(
        f"{ls.url}/api/projects",
        json={"title": f"scale {size}", "label_config": CONFIG},
        headers={"Authorization": f"Token {ls.token}"},
        timeout=60,
    ).json()["id"]
    images = distinct_images(sources, size, offset)
    ls.upload(
        project,
        (
            (f"img-{offset + i}.jpg", square(data) if i < PREDICT_TASKS else data)
            for i, data in enumerate(images)
        ),
    )
    return project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--sizes", nargs="+", type=int, default=[40, 500, 2000])
    parser.add_argument("--requests", type=int, default=12)
    args = parser.parse_args()
    sources = [
        p
        for name in ("crack500", "gaps384", "cfd", "bsds500")
        for p in list_images(args.data / name)
    ]
    work = Path(tempfile.mkdtemp(prefix="crackal-scale-"))
    settings = Settings(
        registry=args.registry,
        cache=work / "cache",
        base_train=args.data / "deepcrack" / "train",
        insecure=True,
    )
    medians: dict[int, float] = {}
    with server.label_studio(REPO / ".venv-ls/bin/label-studio", work / "ls") as ls:
        settings.label_studio_url, settings.label_studio_api_key = ls.url, ls.token
        service = Service(settings)
        service.holder.current()  # P's features: once per model version, not timed
        offset = 0
        for size in args.sizes:
            project = make_project(ls, size, offset, sources)
            offset += size
            for label in ("cold", "warm"):
                with PeakRss() as rss:
                    t0 = time.perf_counter()
                    report = service.rescore_project(project)
                    dt = time.perf_counter() - t0
                print(
                    f"{size:5d} tasks: scoring job {label}: {dt:6.1f} s, peak RSS "
                    f"{rss.peak / 2**30:.2f} GiB ({report.predictions} predictions, "
                    f"{report.fetched} fetched, {len(report.errors)} errors)",
                    flush=True,
                )
            tasks, _ = service.client.tasks_page(project, 1, PREDICT_TASKS)  # the 448 px ones
            times = []
            for i in range(args.requests):
                task = tasks[i % len(tasks)]
                t0 = time.perf_counter()
                out = service.predict([task], CONFIG, project)
                times.append(time.perf_counter() - t0)
                assert out[0], f"task {task['id']}: no prediction"
            medians[size] = statistics.median(times)
            print(
                f"{size:5d} tasks: /predict one {PREDICT_SIDE} px task: median "
                f"{medians[size] * 1000:.0f} ms, p90 "
                f"{statistics.quantiles(times, n=10)[8] * 1000:.0f} ms ({len(times)} calls)",
                flush=True,
            )
    small, large = min(medians), max(medians)
    print(f"/predict median ratio, {large} vs {small} tasks: {medians[large] / medians[small]:.2f}")


if __name__ == "__main__":
    main()
