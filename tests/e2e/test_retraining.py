"""The retraining loop end to end: labels posted in Label Studio -> webhooks -> a new model
version -> its predictions imported for every unlabelled task -> the queue follows it."""

from __future__ import annotations

import time

import numpy as np
import pytest
import requests
from label_studio_sdk.converter.brush import mask2rle
from PIL import Image

CONFIG = """<View><Image name="image" value="$image"/>
<BrushLabels name="tag" toName="image"><Label value="crack"/></BrushLabels></View>"""


def wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


@pytest.fixture(scope="module")
def project(label_studio, backend, crack_data, trained_registry):
    ls = label_studio
    proj = ls.call("POST", "/api/projects", json={"title": "retrain", "label_config": CONFIG})
    paths = sorted((crack_data / "crack500" / "images").iterdir())[::30][:10]
    files = {f"f{i}": (p.name, p.read_bytes(), "image/jpeg") for i, p in enumerate(paths)}
    ls.call("POST", f"/api/projects/{proj['id']}/import", files=files)
    ls.call(
        "POST",
        "/api/ml",
        json={
            "url": backend["url"],
            "project": proj["id"],
            "title": "crackal",
            "is_interactive": False,
        },
    )
    version = trained_registry.current()
    wait_for(
        lambda: all(
            any(p["model_version"] == version for p in t["predictions"])
            for t in ls.tasks(proj["id"])
        ),
        240,
        "the first scoring",
    )
    by_name = {p.name: p for p in paths}
    tasks = ls.tasks(proj["id"])
    for t in tasks:
        t["source"] = by_name[t["data"]["image"].rsplit("/", 1)[-1].split("-", 1)[1]]
    return {"id": proj["id"], "tasks": tasks, "version": version}


def brush_annotation(task: dict, crack_data) -> dict:
    mask = np.asarray(Image.open(crack_data / "crack500" / "masks" / f"{task['source'].stem}.png"))
    h, w = mask.shape
    return {
        "result": [
            {
                "from_name": "tag",
                "to_name": "image",
                "type": "brushlabels",
                "original_width": w,
                "original_height": h,
                "image_rotation": 0,
                "value": {
                    "format": "rle",
                    "rle": [
                        int(v) for v in mask2rle(np.where(mask > 127, 255, 0).astype(np.uint8))
                    ],
                    "brushlabels": ["crack"],
                },
            }
        ]
    }


def test_three_labels_adapt_the_model_and_the_queue_follows(
    label_studio, backend, project, trained_registry, crack_data
):
    ls, pid = label_studio, project["id"]
    labelled = project["tasks"][:3]
    for task in labelled:
        ls.call(
            "POST", f"/api/tasks/{task['id']}/annotations", json=brush_annotation(task, crack_data)
        )
    new = wait_for(
        lambda: (lambda v: v if v != project["version"] else None)(trained_registry.current()),
        300,
        "a new model version",
    )
    meta = trained_registry.meta(new)
    assert meta["parent"] == project["version"]
    assert {r["image"] for r in meta["training"]["added_images"]} == {
        f"task-{t['id']}.jpg" for t in labelled
    }
    assert 0.0 <= meta["metrics"]["labelled"]["ods"] <= 1.0

    def followed():
        proj = ls.call("GET", f"/api/projects/{pid}")
        tasks = ls.tasks(pid)
        unlabelled = [t for t in tasks if not t["annotations"]]
        ok = proj["model_version"] == new and all(
            any(p["model_version"] == new for p in t["predictions"]) for t in unlabelled
        )
        return unlabelled if ok else None

    unlabelled = wait_for(followed, 240, "predictions of the new version")
    assert len(unlabelled) == len(project["tasks"]) - 3
    scores = {
        t["id"]: next(p["score"] for p in t["predictions"] if p["model_version"] == new)
        for t in unlabelled
    }
    served = ls.call("GET", f"/api/projects/{pid}/next")
    assert served["id"] == min(scores, key=scores.get)

    health = requests.get(f"{backend['url']}/health", timeout=10).json()
    assert health["model_version"] == new
    job = health["jobs"]["last"][f"retrain:{pid}"]
    assert job["state"] == "finished" and job["result"]["version"] == new
    assert job["result"]["labels"] == 3
