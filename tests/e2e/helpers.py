"""Helpers of the end-to-end tests: waiting, projects, brush annotations from real masks."""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path

import numpy as np
import requests
from label_studio_sdk.converter.brush import mask2rle
from PIL import Image

from backend.local_servers import free_port
from backend.prediction_label import version_label
from training.registry import Registry

BRUSH_CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="tag" toName="image">
    <Label value="crack" background="#ff0000"/>
  </BrushLabels>
</View>"""


# The S3-compatible server of the cloud storage tests: the one private address besides
# Label Studio's own that the backends may fetch from (an operator's CRACKAL_ALLOWED_HOSTS).
S3_PORT = free_port()

# The backends of the suite run with basic auth, as deployed; BACKEND calls them with it.
BACKEND_AUTH = ("crackal", secrets.token_urlsafe(16))
BACKEND = requests.Session()
BACKEND.auth = BACKEND_AUTH


def connect(ls, project: int, backend_url: str) -> None:
    """Connect the backend to a project as a user would, with its basic auth."""
    ls.call(
        "POST",
        "/api/ml",
        json={
            "url": backend_url,
            "project": project,
            "title": "crackal",
            "is_interactive": False,
            "auth_method": "BASIC_AUTH",
            "basic_auth_user": BACKEND_AUTH[0],
            "basic_auth_pass": BACKEND_AUTH[1],
        },
    )


def wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def make_project(ls, backend_url: str, title: str, paths: list[Path], version: str) -> dict:
    """A brush project with `paths` uploaded, connected to the backend, fully scored."""
    proj = ls.call("POST", "/api/projects", json={"title": title, "label_config": BRUSH_CONFIG})
    files = {f"f{i}": (p.name, p.read_bytes(), "image/jpeg") for i, p in enumerate(paths)}
    ls.call("POST", f"/api/projects/{proj['id']}/import", files=files)
    connect(ls, proj["id"], backend_url)

    label = version_label(version)

    def scored():
        tasks = ls.tasks(proj["id"])
        done = [
            t
            for t in tasks
            if any(p.get("model_version") == label for p in t.get("predictions") or [])
        ]
        return tasks if len(done) == len(tasks) == len(paths) else None

    tasks = wait_for(scored, 300, "every task to get a prediction of the current model")
    wait_reconciled(backend_url, proj["id"])
    by_name = {p.name: p for p in paths}
    for t in tasks:  # uploaded file names are prefixed by Label Studio: <8 hex>-<name>
        t["source"] = by_name[t["data"]["image"].rsplit("/", 1)[-1].split("-", 1)[1]]
    return {"id": proj["id"], "tasks": tasks, "version": version}


def wait_reconciled(backend_url: str, project: int) -> None:
    """Wait for the reconcile job that connecting queued (it runs after the first scoring):
    labels posted before it ends could be trained by it."""

    def finished():
        last = BACKEND.get(f"{backend_url}/health", timeout=10).json()["jobs"]["last"]
        return last.get(f"reconcile:{project}", {}).get("state") == "finished"

    wait_for(finished, 120, f"project {project}'s reconcile job")


def prediction(task: dict, version: str) -> dict:
    """The task's prediction by registry version `version`."""
    return next(p for p in task["predictions"] if p["model_version"] == version_label(version))


def brush_annotation(mask_path: Path) -> dict:
    """An annotation painting the ground-truth mask (255 = crack), RLE by label-studio-sdk."""
    mask = np.asarray(Image.open(mask_path)) > 127
    h, w = mask.shape
    rle = mask2rle(np.where(mask, 255, 0).astype(np.uint8))
    return {
        "result": [
            {
                "from_name": "tag",
                "to_name": "image",
                "type": "brushlabels",
                "original_width": w,
                "original_height": h,
                "image_rotation": 0,
                "value": {"format": "rle", "rle": [int(v) for v in rle], "brushlabels": ["crack"]},
            }
        ]
    }


def registry_copy(trained_registry: Registry, folder: Path) -> Registry:
    """The suite's base model in a registry of the test's own, without any project's line."""
    shutil.copytree(
        trained_registry.root,
        folder,
        ignore=shutil.ignore_patterns("projects", "labels", ".tmp-*"),
    )
    return Registry(folder)


def uploaded_project(ls, title: str, paths: list[Path]) -> int:
    """A new brush-label project holding `paths` as uploaded JPEG files; its id."""
    project = ls.call("POST", "/api/projects", json={"title": title, "label_config": BRUSH_CONFIG})
    pid = project["id"]
    files = {f"f{i}": (p.name, p.read_bytes(), "image/jpeg") for i, p in enumerate(paths)}
    ls.call("POST", f"/api/projects/{pid}/import", files=files)
    return pid
