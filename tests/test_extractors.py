"""The encoder extractors on real images: shapes, pooling grid, determinism, batching, and
which model versions share cached rows."""

import copy

import numpy as np
import pytest
import torch

from selection.embed import embed_paths
from selection.extractors import FeatureExtractor, imagenet_extractor
from selection.images import read_rgb
from training.model import DEFAULT_ENCODER, build_model
from training.model_features import extractor_from_model
from training.registry import LoadedModel

LITE0_CHANNELS = 16 + 24 + 40 + 112 + 320


@pytest.fixture(scope="module")
def images(crack_data):
    cfd = sorted((crack_data / "cfd" / "images").iterdir())[:3]
    deep = sorted((crack_data / "deepcrack" / "train" / "images").iterdir())[:2]
    return [read_rgb(p) for p in cfd + deep]  # two different sizes


def test_rows_per_image_and_dimension(extractor, images):
    assert isinstance(extractor, FeatureExtractor)
    feats = extractor(images)
    assert feats.shape == (5, LITE0_CHANNELS) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    # Average-pooled post-activation maps: no two real photos give the same row.
    assert len({tuple(np.round(r, 4)) for r in feats}) == 5


def test_batching_does_not_change_features(extractor, images):
    together = extractor(images)
    alone = np.vstack([extractor([im]) for im in images])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-5)


def test_grid_pooling_multiplies_the_dimension(images):
    grid = imagenet_extractor(size=256, grid=2)
    feats = grid(images[:2])
    assert feats.shape == (2, 4 * LITE0_CHANNELS)
    # The mean over a 2x2 grid's cells is the global average (maps divide evenly at 256).
    glob = imagenet_extractor(size=256)(images[:2])
    cells = feats.reshape(2, -1)
    start, means = 0, []
    for c in (16, 24, 40, 112, 320):
        block = cells[:, start : start + 4 * c].reshape(2, c, 4)
        means.append(block.mean(axis=2))
        start += 4 * c
    np.testing.assert_allclose(np.hstack(means), glob, rtol=1e-4, atol=1e-5)


def test_version_names_every_setting():
    a, b = imagenet_extractor(size=224), imagenet_extractor(size=448, grid=2)
    assert a.version != b.version
    assert "size=448" in b.version and "grid=2" in b.version and "efficientnet-lite0" in b.version


def test_bad_settings_and_inputs(extractor):
    with pytest.raises(ValueError, match="grid"):
        imagenet_extractor(grid=0)
    with pytest.raises(ValueError, match="uint8"):
        extractor([np.zeros((10, 10), dtype=np.uint8)])
    with pytest.raises(ValueError, match="no images"):
        extractor([])


def test_unreadable_files_are_skipped_and_reported(crack_data, extractor, tmp_path):
    good = sorted((crack_data / "cfd" / "images").iterdir())[:2]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    result = embed_paths([good[0], bad, good[1]], extractor)
    assert [p.name for p in result.paths] == [good[0].name, good[1].name]
    assert [e.path for e in result.skipped] == [str(bad)]
    assert result.features.shape == (2, LITE0_CHANNELS)


def test_a_shrunk_image_embeds_as_the_full_one(extractor, images):
    """Callers shrink each image at once and drop the full one; the row must not change,
    and the resize must be a real antialiased reduction (close to a float resize)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    small = [extractor.shrink(im) for im in images]
    assert all(s.shape == (224, 224, 3) and s.dtype == np.uint8 for s in small)
    np.testing.assert_array_equal(extractor(small), extractor(images))
    assert extractor.shrink(small[0]) is small[0]
    x = torch.from_numpy(images[0]).permute(2, 0, 1)[None].float()
    ref = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    diff = np.abs(small[0].astype(np.float32) - ref[0].permute(1, 2, 0).numpy())
    assert diff.max() < 1.5 and diff.mean() < 0.5, diff.max()  # uint8 rounding only


def test_versions_that_share_an_encoder_share_cached_features(images):
    parent = build_model()
    child = copy.deepcopy(parent)  # adapted with its encoder frozen: only the decoder moved
    with torch.no_grad():
        next(child.decoder.parameters()).add_(0.1)
    first = extractor_from_model(LoadedModel("v1", parent, {"encoder": DEFAULT_ENCODER}), 224)
    second = extractor_from_model(LoadedModel("v2", child, {"encoder": DEFAULT_ENCODER}), 224)
    assert first.name == "model:v1" and second.name == "model:v2"
    assert first.version == second.version
    assert np.array_equal(first(images[:2]), second(images[:2]))
    with torch.no_grad():  # a BatchNorm statistic of the encoder is part of its state
        next(b for b in child.encoder.buffers() if b.dtype.is_floating_point).mul_(1.5)
    third = extractor_from_model(LoadedModel("v3", child, {"encoder": DEFAULT_ENCODER}), 224)
    assert third.version != first.version
