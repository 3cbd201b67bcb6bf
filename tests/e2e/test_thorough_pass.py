"""The thorough pass against a real Label Studio, through the job path a worker runs: after
a quick retrain that held out its newest label, the idle job trains a candidate on every
layer on exactly the labels the quick retrain trained on, judges it on the label it held
out, and serves it when it wins; while other jobs wait it gives way and stays due; once
done it is not repeated."""

from __future__ import annotations

from pathlib import Path

from backend.job_functions import run_job
from backend.last_retrain import read_last_retrain
from backend.retrain import ThoroughStatus, thorough_pass
from backend.service import Service
from backend.settings import Settings
from training.registry import Registry
from training.train import Adaptation, TrainConfig

from .helpers import brush_annotation, registry_copy, uploaded_project


def added(registry: Registry, version: str) -> set[str]:
    return {r["image"] for r in registry.meta(version)["training"]["added_images"]}


def test_a_quick_retrain_is_followed_by_a_thorough_pass_on_its_labels_once(
    label_studio, trained_registry, base_train, base_val, crack_data, tmp_path
):
    registry = registry_copy(trained_registry, tmp_path / "registry")
    cfd = sorted((crack_data / "cfd" / "images").iterdir())[:5]
    pid = uploaded_project(label_studio, "thorough", cfd)
    tasks = sorted(label_studio.tasks(pid), key=lambda t: t["id"])
    for task in tasks[:3]:  # the newest (the third) is held out to judge
        upload = Path(task["data"]["image"]).name.split("-", 1)[1]
        mask = crack_data / "cfd" / "masks" / f"{Path(upload).stem}.png"
        body = brush_annotation(mask)
        label_studio.call("POST", f"/api/tasks/{task['id']}/annotations", json=body)
    settings = Settings(
        label_studio_url=label_studio.url,
        label_studio_api_key=label_studio.token,
        registry=registry.root,
        base_train=base_train,
        base_val=base_val,
        cache=tmp_path / "cache",
        feature_size=224,
        onnx=False,
        adaptation=Adaptation.QUICK,
        adapt_steps=2,
        thorough_minutes=0.05,  # 3 s: the budget ends the pass, as on a slow CPU
    )
    service = Service(settings)
    quick = run_job("retrain", pid, service)
    assert quick["status"] == "trained" and quick["labels"] == 2
    (judged,) = quick["held_out"]
    assert judged == tasks[2]["id"]
    assert read_last_retrain(registry.root, pid)["preset"] == "quick"
    serving = registry.current(pid)
    versions = len(registry.versions())

    # other jobs waiting: the pass gives way, registers nothing and stays due
    stopped = run_job("idle", pid, service, waiting=lambda: True)
    assert stopped["status"] == ThoroughStatus.YIELDED, stopped
    assert len(registry.versions()) == versions and registry.current(pid) == serving
    assert read_last_retrain(registry.root, pid)["preset"] == "quick"

    deep = run_job("idle", pid, service, waiting=lambda: False)
    assert deep["status"] == ThoroughStatus.DONE, deep
    assert deep["held_out"] == [judged] and deep["parent"] == serving
    # the same labels as the quick retrain trained on, every layer, judged on the held-out one
    assert added(registry, deep["version"]) == added(registry, quick["version"])
    assert f"task-{judged}.jpg" not in added(registry, deep["version"])
    assert deep["metrics"]["held_out"]["images"] == 1
    parent_encoder = registry.meta(serving)["encoder_sha256"]
    assert registry.meta(deep["version"])["encoder_sha256"] != parent_encoder
    assert 1 <= deep["steps"] < 600  # ended by its 3-s budget
    assert deep["serving"] == registry.current(pid)
    assert deep["serving"] == (deep["version"] if deep["promoted"] else serving)
    record = read_last_retrain(registry.root, pid)
    assert record["preset"] == "thorough" and record["version"] == deep["version"]
    assert record["round_judge"] == [judged]

    # done once: not due again until a quick retrain on new labels, and the next pause's
    # idle job does not retrain on the held-out label alone (it joins the next retrain)
    again = thorough_pass(service, pid, TrainConfig.thorough(max_minutes=0.05))
    assert again["status"] == ThoroughStatus.NOT_DUE
    paused = run_job("idle", pid, service, waiting=lambda: False)
    assert paused["status"] == "only held-out labels changed", paused
    assert len(registry.versions()) == versions + 1
