"""Shared fixtures: the real crack data, the ImageNet extractor, small real subsets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crackal.cli import main
from selection.extractors import EncoderExtractor, imagenet_extractor
from tests.availability import unavailable
from training.model import DEFAULT_ENCODER, build_model
from training.registry import Registry

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    return Path(os.environ.get("CRACK_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def crack_data() -> Path:
    """`../shared/data` (or $CRACK_DATA). Absent: skipped locally, an error under CI."""
    root = data_root()
    if not (root / "deepcrack" / "train" / "images").is_dir():
        unavailable(f"real crack images not found at {root} (set CRACK_DATA)")
    return root


@pytest.fixture(scope="session")
def extractor() -> EncoderExtractor:
    """The shipped ImageNet extractor at a small input size (fast, same code path)."""
    return imagenet_extractor(size=224)


@pytest.fixture(scope="session")
def real_subset(crack_data, tmp_path_factory):
    """Factory: a folder of links to `count` images spread evenly over a real set."""

    def make(set_name: str, count: int) -> Path:
        images = sorted((crack_data / set_name / "images").iterdir())
        step = max(1, len(images) // count)
        dest = tmp_path_factory.mktemp(set_name.replace("/", "-"))
        for path in images[::step][:count]:
            (dest / path.name).symlink_to(path)
        return dest

    return make


TINY = ["--steps", "4", "--batch-size", "2", "--crop", "64"]


def registry_with_an_untrained_model(root: Path) -> Registry:
    """A registry whose current version is an untrained (ImageNet-encoder) UNet++."""
    registry = Registry(root)
    registry.register(
        build_model().state_dict(),
        {"encoder": DEFAULT_ENCODER, "threshold": 0.5},
        make_current=True,
    )
    return registry


def cli(*args) -> int:
    """`crackal <args>` in this process (paths may be given as Path); its exit status."""
    return main([str(a) for a in args])


@pytest.fixture(scope="session")
def sets(real_subset, tmp_path_factory):
    """Tiny labelled sets built from real ones (images/ + masks/ layout)."""
    root = tmp_path_factory.mktemp("sets")

    def make(name, source, count):
        images = real_subset(source, count)
        (root / name / "images").mkdir(parents=True)
        (root / name / "masks").mkdir()
        for link in sorted(images.iterdir()):  # links into <source>/images; masks beside
            real = link.resolve()
            (root / name / "images" / link.name).symlink_to(real)
            mask = real.parent.parent / "masks" / f"{real.stem}.png"
            (root / name / "masks" / mask.name).symlink_to(mask)
        return root / name

    return {
        "train": make("train", "deepcrack/train", 8),
        "val": make("val", "deepcrack/val", 4),
        "crack500": make("crack500", "crack500", 6),
        "cfd": make("cfd", "cfd", 6),
    }


@pytest.fixture(scope="session")
def tiny_registry(sets, tmp_path_factory):
    """A registry holding a model trained for a few steps on `sets['train']`."""
    root = tmp_path_factory.mktemp("registry")
    args = ["train", "--train", sets["train"], "--val", sets["val"], "--registry", root, *TINY]
    assert cli(*args) == 0
    return Registry(root)
