"""A project as teams run them: images in S3-compatible cloud storage (a moto server; Label
Studio's S3 storage with a custom endpoint), tasks holding `s3://` URIs (Label Studio's
task listing gives them as `/tasks/<id>/resolve/?fileuri=<base64 URI>`; `/predict` may get
the raw URI, which the backend sends through the presign route), a `<Brush>` + `<Labels>`
config with two labels, and the personal access token of the suite. Predictions, the queue
and a retrain started by the `/train` route all work."""

from __future__ import annotations

import base64
import io
import os
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle, mask2rle
from PIL import Image

from backend import local_servers as server
from backend.edit_records import EditLog
from backend.prediction_label import version_label

from .helpers import BACKEND, S3_PORT, connect, prediction, wait_for

TWO_LABELS = """<View>
  <Image name="image" value="$image"/>
  <Brush name="brush" toName="image"/>
  <Labels name="kind" toName="image">
    <Label value="spalling" background="#0000ff"/>
    <Label value="crack" background="#ff0000"/>
  </Labels>
</View>"""
BUCKET = "inspections"


@pytest.fixture(scope="module")
def s3(tmp_path_factory, crack_data):
    """A moto S3 server on loopback holding 6 real photos (3 CFD, 3 Crack500)."""
    import boto3

    work = tmp_path_factory.mktemp("s3")
    port = S3_PORT
    url = f"http://127.0.0.1:{port}"
    moto = Path(sys.executable).parent / "moto_server"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    with server.running(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)], env, work / "moto.log",
        f"{url}/moto-api/", 60,
    ):  # fmt: skip
        client = boto3.client(
            "s3", endpoint_url=url, region_name="us-east-1",
            aws_access_key_id="test", aws_secret_access_key="test",
        )  # fmt: skip
        client.create_bucket(Bucket=BUCKET)
        photos = {}
        for name in ("cfd", "crack500"):
            for path in sorted((crack_data / name / "images").iterdir())[:3]:
                key = f"survey/{name}-{path.name}"
                client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
                photos[key] = path
        yield {"url": url, "photos": photos}


@pytest.fixture(scope="module")
def project(label_studio, backend, s3, trained_registry):
    ls = label_studio
    proj = ls.call("POST", "/api/projects", json={"title": "cloud", "label_config": TWO_LABELS})
    storage = ls.call(
        "POST",
        "/api/storages/s3",
        json={
            "project": proj["id"], "title": "survey", "bucket": BUCKET, "prefix": "survey/",
            "use_blob_urls": True, "presign": True, "s3_endpoint": s3["url"],
            "aws_access_key_id": "test", "aws_secret_access_key": "test",
            "region_name": "us-east-1",
        },
    )  # fmt: skip
    ls.call("POST", f"/api/storages/s3/{storage['id']}/sync")
    tasks = wait_for(
        lambda: (lambda t: t if len(t) == len(s3["photos"]) else None)(ls.tasks(proj["id"])),
        60,
        "the storage sync",
    )
    assert all(cloud_uri(t).startswith(f"s3://{BUCKET}/survey/") for t in tasks)
    version = trained_registry.current()
    connect(ls, proj["id"], backend["url"])

    def scored():
        tasks = ls.tasks(proj["id"])
        label = version_label(version)
        ok = all(any(p["model_version"] == label for p in t["predictions"]) for t in tasks)
        # the queue's order is set right after the import: wait for it too
        ok = ok and ls.call("GET", f"/api/projects/{proj['id']}")["model_version"] == label
        return tasks if ok else None

    tasks = wait_for(scored, 300, "a prediction for every cloud task")
    for t in tasks:
        t["source"] = s3["photos"][cloud_uri(t).split(f"s3://{BUCKET}/", 1)[1]]
    return {"id": proj["id"], "tasks": tasks, "version": version}


def cloud_uri(task: dict) -> str:
    """The storage URI behind a task's resolved image link."""
    link = urlparse(task["data"]["image"])
    assert link.path == f"/tasks/{task['id']}/resolve/", task["data"]
    return base64.urlsafe_b64decode(parse_qs(link.query)["fileuri"][0]).decode()


def test_predict_fetches_a_raw_cloud_uri_through_presign(backend, project):
    task = project["tasks"][1]
    resp = BACKEND.post(
        f"{backend['url']}/predict",
        json={
            "tasks": [{"id": task["id"], "data": {"image": cloud_uri(task)}}],
            "project": project["id"],
            "label_config": TWO_LABELS,
        },
        timeout=100,
    )
    assert resp.status_code == 200, resp.text
    ((pred,),) = resp.json()["results"]
    (result,) = pred["result"]
    w, h = Image.open(task["source"]).size
    assert (result["original_width"], result["original_height"]) == (w, h)
    imported = prediction(task, project["version"])
    assert result["value"]["rle"] == imported["result"][0]["value"]["rle"]


def test_cloud_tasks_get_crack_masks_labelled_crack_at_their_size(project):
    for task in project["tasks"]:
        pred = prediction(task, project["version"])
        (result,) = pred["result"]
        assert (result["from_name"], result["type"]) == ("kind", "brushlabels")
        assert result["value"]["brushlabels"] == ["crack"]
        w, h = Image.open(task["source"]).size
        assert (result["original_width"], result["original_height"]) == (w, h)
        assert decode_rle(result["value"]["rle"]).size == w * h * 4
        assert 0.0 <= pred["score"] <= 1.0


def test_the_queue_serves_the_farthest_cloud_task_first(label_studio, project):
    scores = {
        t["id"]: next(
            p["score"]
            for p in t["predictions"]
            if p["model_version"] == version_label(project["version"])
        )
        for t in project["tasks"]
    }
    served = label_studio.call("GET", f"/api/projects/{project['id']}/next")
    assert served["id"] == min(scores, key=scores.get)


def _stroke(mask: np.ndarray, label: str, rid: str) -> dict:
    h, w = mask.shape
    rle = [int(v) for v in mask2rle(np.where(mask, 255, 0).astype(np.uint8))]
    return {
        "id": rid, "from_name": "kind", "to_name": "image", "type": "brushlabels",
        "original_width": w, "original_height": h, "image_rotation": 0,
        "value": {"format": "rle", "rle": rle, "brushlabels": [label]},
    }  # fmt: skip


def test_train_route_retrains_on_crack_strokes_only(label_studio, backend, project, crack_data):
    """One task labelled with a crack stroke (its ground truth) and a spalling stroke; the
    `/train` route that older Label Studio versions call queues the retrain, which reads
    the image through presign and trains on the crack stroke alone."""
    task = project["tasks"][0]
    source = task["source"]
    truth = np.asarray(Image.open(source.parent.parent / "masks" / f"{source.stem}.png")) > 127
    spalling = np.zeros_like(truth)
    spalling[:30, :30] = True
    label_studio.call(
        "POST", f"/api/tasks/{task['id']}/annotations",
        json={"result": [_stroke(truth, "crack", "a"), _stroke(spalling, "spalling", "b")]},
    )  # fmt: skip
    resp = BACKEND.post(f"{backend['url']}/train", json={"project": project["id"]}, timeout=10)
    assert resp.status_code == 200 and resp.json()["status"] in ("queued", "follow-up")

    def finished():
        jobs = BACKEND.get(f"{backend['url']}/health", timeout=10).json()["jobs"]
        job = jobs.get("last", {}).get(f"retrain:{project['id']}", {})
        done = job.get("state") == "failed" or (job.get("result") or {}).get("status") == "trained"
        return job if done else None

    job = wait_for(finished, 400, "the retrain job")
    assert job["state"] == "finished", job
    assert job["result"]["labels"] == 1 and job["result"]["skipped"] == {}
    folder = Path(backend["env"]["CRACKAL_REGISTRY"]) / "labels" / f"project-{project['id']}"
    written = np.asarray(Image.open(folder / "masks" / f"task-{task['id']}.png")) > 127
    assert np.array_equal(written, truth)  # the spalling square is not in the crack mask
    stored = Image.open(io.BytesIO(next((folder / "images").iterdir()).read_bytes()))
    assert stored.size == Image.open(source).size
    # the label is also a test of the version that pre-annotated the task
    edits = EditLog(Path(backend["env"]["CRACKAL_REGISTRY"]), project["id"]).read()
    (record,) = [r for r in edits if r.task == task["id"]]
    assert record.model_version == project["version"] and 0.0 <= record.pixel_f <= 1.0
    assert record.tolerant_f >= record.pixel_f and record.label_pixels == int(truth.sum())
