"""Model registry: immutable versions, atomic current pointer, rollback, concurrent writers."""

import multiprocessing

import pytest
import torch

from training.model import build_model
from training.registry import Registry, RegistryError


@pytest.fixture(scope="module")
def state():
    return build_model(pretrained=None).state_dict()


def register_many(root: str, count: int) -> None:
    registry = Registry(root)
    small = {"w": torch.zeros(3)}
    for _ in range(count):
        registry.register(small, {"encoder": "tu-tf_efficientnet_lite0"})


def test_register_load_and_switch(tmp_path, state):
    registry = Registry(tmp_path)
    assert registry.current() is None and registry.versions() == []
    with pytest.raises(RegistryError, match="no current version"):
        registry.load()
    v1 = registry.register(
        state, {"encoder": "tu-tf_efficientnet_lite0", "threshold": 0.3}, make_current=True
    )
    v2 = registry.register(state, {"encoder": "tu-tf_efficientnet_lite0", "parent": v1})
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
    registry.register(state, {"encoder": "tu-tf_efficientnet_lite0"}, make_current=True)
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
