"""Benchmark the ML backend on this machine, against a real Label Studio server.

Prints:
- /predict latency (p50, p95) for one 448 x 448 image per request (Flask test client, the
  full handler: data-URL decoding, pool scoring, mask prediction, RLE encoding);
- the time to score and import a project of N tasks (default 1,000 real images):
  fetching every image from Label Studio, embedding, PCA + I_dist, masks, bulk import and
  queue ordering; first with a cold feature cache, then again with a warm one.

Needs Label Studio in .venv-ls (./scripts/setup-services) and a model registry
(`--registry`, e.g. one made by `crackal train`).
Usage: python benchmarks/ml_backend.py --registry registry [--tasks 1000] [--requests 30]
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import tempfile
import time
from pathlib import Path

import requests
from PIL import Image

from backend import local_servers as server
from backend.app import create_app
from backend.service import Service
from backend.settings import Settings
from selection.images import list_images

REPO = Path(__file__).resolve().parents[1]
CONFIG = (
    '<View><Image name="image" value="$image"/><BrushLabels name="tag" toName="image">'
    '<Label value="crack"/></BrushLabels></View>'
)


def predict_latency(settings: Settings, images: list[Path], count: int) -> None:
    client = create_app(settings).test_client()
    times = []
    for i in range(count + 2):
        with Image.open(images[i % len(images)]) as img:
            buf = io.BytesIO()
            img.convert("RGB").resize((448, 448)).save(buf, "JPEG", quality=90)
        url = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
        body = {"tasks": [{"id": i + 1, "data": {"image": url}}], "label_config": CONFIG}
        t0 = time.perf_counter()
        resp = client.post("/predict", json=body)
        if i >= 2:  # the first two load the model and warm up
            times.append(time.perf_counter() - t0)
        assert resp.status_code == 200 and resp.get_json()["results"][0], resp.get_json()
    q = statistics.quantiles(times, n=20)
    print(f"/predict, one 448x448 image per request, {count} requests:")
    print(f"  p50 {statistics.median(times) * 1000:7.0f} ms   p95 {q[18] * 1000:7.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()

    pool = [
        p
        for name in ("crack500", "gaps384", "cfd", "bsds500", "deepcrack/val")
        for p in list_images(args.data / name)
    ][: args.tasks]
    work = Path(tempfile.mkdtemp(prefix="crackal-bench-"))
    settings = Settings(
        registry=args.registry,
        cache=work / "cache",
        base_train=args.data / "deepcrack" / "train",
        insecure=True,  # an in-process test client, no network
    )
    predict_latency(settings, pool, args.requests)

    with server.label_studio(REPO / ".venv-ls/bin/label-studio", work / "ls") as ls:
        settings.label_studio_url = ls.url
        settings.label_studio_api_key = ls.token
        http = requests.Session()
        http.headers["Authorization"] = f"Token {ls.token}"
        url = settings.label_studio_url
        project = http.post(
            f"{url}/api/projects", json={"title": "bench", "label_config": CONFIG}, timeout=60
        ).json()["id"]
        ls.upload(project, ((p.name, p.read_bytes()) for p in pool))
        service = Service(settings)
        # P's features are computed once per model version in a deployment: not timed here.
        service.holder.current()
        for label in ("cold feature cache", "warm feature cache"):
            t0 = time.perf_counter()
            report = service.rescore_project(project)
            dt = time.perf_counter() - t0
            print(
                f"score + import a {report.tasks}-task project ({label}): {dt:6.1f} s "
                f"({report.predictions} predictions, {len(report.errors)} errors)"
            )


if __name__ == "__main__":
    main()
