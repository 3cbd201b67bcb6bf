"""Model registry: immutable versions, atomic current pointer, rollback, concurrent writers,
retention of versions and their caches."""

import multiprocessing
import os
import signal
import time

import numpy as np
import pytest
import torch

from backend.retention import apply_retention
from selection.cache import FeatureCache
from selection.extractors import imagenet_extractor
from training.model import DEFAULT_ENCODER, build_model, encoder_sha256
from training.model_features import extractor_from_model
from training.registry import Registry, RegistryError


@pytest.fixture(scope="module")
def state():
    return build_model(pretrained=None).state_dict()


def register_many(root: str, count: int) -> None:
    registry = Registry(root)
    small = {"w": torch.zeros(3)}
    for _ in range(count):
        registry.register(small, {"encoder": DEFAULT_ENCODER})


def test_register_load_and_switch(tmp_path, state):
    registry = Registry(tmp_path)
    assert registry.current() is None and registry.versions() == []
    with pytest.raises(RegistryError, match="no current version"):
        registry.load()
    v1 = registry.register(state, {"encoder": DEFAULT_ENCODER, "threshold": 0.3}, make_current=True)
    v2 = registry.register(state, {"encoder": DEFAULT_ENCODER, "parent": v1})
    assert (v1, v2) == ("v1", "v2") and registry.versions() == ["v1", "v2"]
    assert registry.current() == "v1" and registry.resolve("latest") == "v2"
    loaded = registry.load()
    assert loaded.version == "v1" and loaded.threshold == 0.3 and not loaded.model.training
    for key, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, state[key])
    assert len(registry.meta("v2")["weights_sha256"]) == 64

    registry.set_current("v2", reason="test")
    assert registry.current() == "v2"
    assert registry.rollback() == "v1" and registry.current() == "v1"
    assert [e["version"] for e in registry.history()] == ["v1", "v2", "v1"]
    with pytest.raises(RegistryError, match="no version 'v9'"):
        registry.set_current("v9")


def test_tampered_weights_are_refused(tmp_path, state):
    registry = Registry(tmp_path)
    registry.register(state, {"encoder": DEFAULT_ENCODER}, make_current=True)
    with open(registry.weights_path(), "ab") as fh:
        fh.write(b"x")
    with pytest.raises(RegistryError, match="do not match"):
        registry.load()


def test_concurrent_registrations_get_distinct_versions(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=register_many, args=(str(tmp_path), 5)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    registry = Registry(tmp_path)
    assert registry.versions() == [f"v{i}" for i in range(1, 16)]
    assert not list(registry.versions_dir.glob(".tmp-*"))


def test_rollback_without_history_is_an_error(tmp_path):
    registry = Registry(tmp_path)
    register_many(str(tmp_path), 1)
    registry.set_current("v1")
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback()


def test_a_project_line_switches_alone_and_a_rollback_during_training_stays(tmp_path):
    register_many(str(tmp_path), 4)
    registry = Registry(tmp_path)
    registry.set_current("v1")
    assert registry.current(7) == "v1" and registry.own_current(7) is None  # the shared one
    # a retrain of project 7 started from the shared v1 (no line of its own): promoted
    assert registry.promote("v2", expected=None, reason="adapted", project=7)
    assert registry.current(7) == "v2" and registry.current() == "v1"
    assert registry.current(8) == "v1" and registry.projects() == [7]
    # the next retrain started from v2; meanwhile an operator rolled project 7 back to v1
    registry.rollback(project=7)
    assert registry.current(7) == "v1"
    assert not registry.promote("v3", expected="v2", reason="adapted", project=7)
    assert registry.current(7) == "v1"  # the rollback stays
    assert [e["version"] for e in registry.history(7)] == ["v2", "v1"]
    assert registry.history() == [e for e in registry.history() if e["version"] == "v1"]


def test_a_damaged_current_falls_back_to_the_newest_intact_earlier_version(tmp_path, state):
    registry = Registry(tmp_path)
    meta = {"encoder": DEFAULT_ENCODER}
    for _ in range(3):
        registry.register(state, meta)
    registry.set_current("v1")
    registry.set_current("v2", project=5)
    registry.set_current("v3", project=5)
    (registry.versions_dir / "v3" / "weights.pt").write_bytes(b"torn")  # a damaged disk
    loaded, problem = registry.load_serving(5)
    assert loaded.version == "v2" and "instead of v3" in problem and "weights" in problem
    (registry.versions_dir / "v2" / "meta.json").write_text("{")
    loaded, problem = registry.load_serving(5)
    assert loaded.version == "v1"
    assert registry.load_serving()[1] is None  # the shared line was never damaged


def test_prune_keeps_the_newest_every_lines_current_and_its_rollback_targets(tmp_path):
    register_many(str(tmp_path), 6)
    registry = Registry(tmp_path)
    registry.set_current("v1")
    registry.set_current("v3", project=2)
    assert registry.prune(2) == ["v2", "v4"]
    assert registry.versions() == ["v1", "v3", "v5", "v6"]
    registry.set_current("v5", project=2)
    register_many(str(tmp_path), 3)  # v7, v8, v9
    assert registry.prune(2) == ["v6", "v7"]  # v3 stays: project 2 may roll back to it
    assert registry.rollback(project=2) == "v3"
    with pytest.raises(ValueError):
        registry.prune(0)


def write_forever(root: str, writing) -> None:
    registry = Registry(root)
    state = build_model(pretrained=None).state_dict()
    while True:
        name = registry.register(state, {"encoder": DEFAULT_ENCODER})
        registry.set_current(name, project=1)
        writing.set()


def test_kill_9_during_registry_writes_leaves_a_loadable_registry(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    for wait in (0.05, 0.4):  # killed at different points of a write
        writing = ctx.Event()
        proc = ctx.Process(target=write_forever, args=(str(tmp_path), writing))
        proc.start()
        assert writing.wait(180), "the writer never finished a version"
        time.sleep(wait)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        registry = Registry(tmp_path)
        loaded, problem = registry.load_serving(1)
        assert problem is None and loaded.version == registry.current(1)
        for name in registry.versions():  # a version is whole or absent, never half
            registry.load(name)


def test_retention_drops_exactly_the_caches_no_kept_version_uses(tmp_path, state):
    frozen = {k: v.clone() for k, v in state.items()}  # adapted with its encoder frozen
    frozen["decoder.blocks.x_0_0.conv1.0.weight"] += 0.1
    moved = {k: v.clone() for k, v in frozen.items()}  # adapted with its encoder trained
    moved["encoder.model.conv_stem.weight"] += 0.1
    for child, shared in ((frozen, True), (moved, False)):
        root = tmp_path / ("frozen" if shared else "moved")
        registry, cache = Registry(root / "reg"), root / "cache"
        registry.register(state, {"encoder": DEFAULT_ENCODER})  # v1
        # v2's encoder hash registered with it (as fit_version does) or, for versions made
        # before, computed from its weights
        meta = {"encoder_sha256": encoder_sha256(child)} if shared else {}
        registry.register(child, {"encoder": DEFAULT_ENCODER, **meta})  # v2
        registry.set_current("v2")
        folders = {}  # version -> its feature cache folder (keyed by its extractor's version)
        for name in ("v1", "v2"):
            extractor = extractor_from_model(registry.load(name), size=64)
            FeatureCache(cache, extractor.version).put("0" * 64, np.ones(4, dtype=np.float32))
            folders[name] = FeatureCache(cache, extractor.version).folder
        imagenet = FeatureCache(cache, imagenet_extractor(64).version).folder
        imagenet.mkdir(parents=True, exist_ok=True)
        old = cache / "features" / "old"  # keyed by the whole model: no extractor reads it
        old.mkdir()
        (old / "VERSION").write_text(f"model:v2|crackal-model-sha256:{'a' * 20}|size=448")
        masks = {n: cache / "masks" / f"{registry.meta(n)['weights_sha256'][:20]}-t0.5000"
                 for n in ("v1", "v2")}  # fmt: skip
        for folder in masks.values():
            folder.mkdir(parents=True)
        assert (folders["v1"] == folders["v2"]) is shared
        assert apply_retention(registry, cache, keep=1) == ["v1"]
        assert folders["v1"].is_dir() is shared  # still v2's rows when v2 has v1's encoder
        assert folders["v2"].is_dir() and imagenet.is_dir() and not old.exists()
        assert masks["v2"].is_dir() and not masks["v1"].exists()


def test_trained_images_follow_the_parents_until_a_record_is_missing(tmp_path):
    registry = Registry(tmp_path)
    small = {"w": torch.zeros(3)}

    def version(parent, images, added):
        training = {"images": [{"sha256": h} for h in images],
                    "added_images": [{"sha256": h} for h in added]}  # fmt: skip
        return registry.register(
            small, {"encoder": DEFAULT_ENCODER, "parent": parent, "training": training}
        )

    v1 = version(None, ["p1", "p2"], [])
    v2 = version(v1, ["p1", "p2"], ["a"])
    v3 = version(v2, ["p1", "p2"], ["a", "b"])
    assert registry.trained_images(v3) == {"p1", "p2", "a", "b"}
    assert registry.trained_images(v1) == {"p1", "p2"}
    orphan = version("v99", [], ["c"])  # its parent was pruned
    assert registry.trained_images(orphan) == {"c"}
