"""Masks on onnxruntime: the exported version agrees with torch on real crack images (whole
and tiled), the export is cached per version and reused, and any failure leaves torch
serving; the benchmark's onnxruntime features equal torch's row by row and in ranking."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from backend.model_holder import ModelHolder
from backend.settings import Settings
from selection.images import read_rgb
from tests.conftest import registry_with_an_untrained_model
from training import onnx_model
from training.model import DEFAULT_ENCODER, build_model
from training.onnx_model import OnnxRunner, load_runner, onnx_path
from training.predict import predict_probs

TOLERANCE = 1e-3  # max abs difference of probabilities, onnxruntime against torch


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return registry_with_an_untrained_model(tmp_path_factory.mktemp("registry"))


@pytest.fixture(scope="module")
def loaded(registry):
    return registry.load()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def runner(loaded, cache):
    return load_runner(loaded, cache)


@pytest.fixture(scope="module")
def cfd_image(crack_data):
    return read_rgb(sorted((crack_data / "cfd" / "images").iterdir())[0])


def assert_masks_agree(torch_probs, onnx_probs, threshold):
    """Thresholded masks are equal except where torch's probability is within the
    tolerance of the threshold."""
    differ = (torch_probs > threshold) != (onnx_probs > threshold)
    assert not (differ & (np.abs(torch_probs - threshold) > TOLERANCE)).any()


def test_a_small_real_image_matches_torch(loaded, runner, cfd_image):
    assert max(cfd_image.shape[:2]) <= 512  # one forward pass, sides padded to 32
    expected = predict_probs(loaded.model, cfd_image, loaded.encoder)
    got = predict_probs(loaded.model, cfd_image, loaded.encoder, runner=runner)
    assert got.shape == expected.shape == cfd_image.shape[:2] and got.dtype == np.float32
    diff = float(np.abs(got - expected).max())
    print(f"small {cfd_image.shape[1]}x{cfd_image.shape[0]}: max abs difference {diff:.2e}")
    assert diff < TOLERANCE
    for threshold in (loaded.threshold, float(np.quantile(expected, 0.9))):
        assert_masks_agree(expected, got, threshold)


def test_a_large_real_image_matches_torch_tile_by_tile(loaded, runner, cfd_image):
    big = np.array(Image.fromarray(cfd_image).resize((1440, 960), Image.BILINEAR))
    expected = predict_probs(loaded.model, big, loaded.encoder)  # 8 tiles of 512
    got = predict_probs(loaded.model, big, loaded.encoder, runner=runner)
    assert got.shape == expected.shape == (960, 1440)
    diff = float(np.abs(got - expected).max())
    print(f"tiled 1440x960: max abs difference {diff:.2e}")
    assert diff < TOLERANCE
    assert_masks_agree(expected, got, loaded.threshold)
    quick = predict_probs(loaded.model, big, loaded.encoder, max_side=400)
    assert (
        np.abs(predict_probs(loaded.model, big, loaded.encoder, 400, runner=runner) - quick).max()
        < TOLERANCE
    )


def test_the_export_is_cached_by_weights_hash_and_reused(loaded, runner, cache, monkeypatch):
    path = onnx_path(cache, loaded.meta["weights_sha256"])
    assert runner.path == path and path.is_file()
    assert path.parent == cache / "onnx" and path.stem == loaded.meta["weights_sha256"][:20]
    assert not list(path.parent.glob(".*.tmp"))  # written atomically: no leftovers
    stamp = path.stat().st_mtime_ns

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_model, "export_onnx", no_export)
    again = load_runner(loaded, cache)
    assert isinstance(again, OnnxRunner) and again.path == path
    assert path.stat().st_mtime_ns == stamp


def holder_settings(registry, cache, **kw) -> Settings:
    return Settings(registry=registry.root, cache=cache, feature_size=224, **kw)


def test_serving_gets_the_runner_unless_turned_off(registry, runner, cache):
    serving = ModelHolder(holder_settings(registry, cache)).current()
    assert isinstance(serving.onnx, OnnxRunner) and serving.onnx.path == runner.path
    assert ModelHolder(holder_settings(registry, cache, onnx=False)).current().onnx is None
    assert Settings.from_env({}).onnx is True
    assert Settings.from_env({"CRACKAL_ONNX": "0"}).onnx is False


def test_a_broken_onnx_file_falls_back_to_torch(registry, loaded, cfd_image, tmp_path, caplog):
    path = onnx_path(tmp_path, loaded.meta["weights_sha256"])
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x08\x07 not a protobuf model")
    with caplog.at_level(logging.WARNING, logger="crackal.backend"):
        serving = ModelHolder(holder_settings(registry, tmp_path)).current()
    assert serving.onnx is None
    assert "masks served with torch" in caplog.text and loaded.version in caplog.text
    probs = predict_probs(serving.model.model, cfd_image, serving.model.encoder, runner=None)
    assert probs.shape == cfd_image.shape[:2]


def test_a_failed_export_falls_back_to_torch(registry, tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("exporter unavailable")

    monkeypatch.setattr(onnx_model, "export_onnx", broken)
    with caplog.at_level(logging.WARNING, logger="crackal.backend"):
        serving = ModelHolder(holder_settings(registry, tmp_path)).current()
    assert serving.onnx is None and "exporter unavailable" in caplog.text


def test_an_export_that_disagrees_with_torch_is_refused(registry, runner, tmp_path):
    other = registry.register(
        build_model().state_dict(), {"encoder": DEFAULT_ENCODER}
    )  # another random decoder; the shared line still serves v1
    loaded_other = registry.load(other)
    path = onnx_path(tmp_path, loaded_other.meta["weights_sha256"])
    path.parent.mkdir(parents=True)
    path.write_bytes(runner.path.read_bytes())  # v1's graph under v2's name
    with pytest.raises(ValueError, match="differs from torch"):
        load_runner(loaded_other, tmp_path)


def test_features_on_onnxruntime_equal_torchs_and_rank_the_pool_the_same(
    crack_data, extractor, tmp_path
):
    from selection.onnx_features import OnnxExtractor
    from selection.scoring import score_set

    fast = OnnxExtractor(extractor, tmp_path)
    assert fast.version == extractor.version and fast.path.is_file()
    primary = [read_rgb(p) for p in sorted((crack_data / "deepcrack/train/images").iterdir())[:8]]
    pool = [
        read_rgb(p)
        for name in ("cfd", "crack500", "gaps384", "bsds500")
        for p in sorted((crack_data / name / "images").iterdir())[:3]
    ]
    for images in (primary, pool):
        want, got = extractor(images), fast(images)
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    names = [str(i) for i in range(len(pool))]
    by_torch = score_set("pool", names, extractor(pool), extractor(primary))
    by_onnx = score_set("pool", names, fast(pool), fast(primary))
    assert list(np.argsort(by_torch.i_dist)) == list(np.argsort(by_onnx.i_dist))
