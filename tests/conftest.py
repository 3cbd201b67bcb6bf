"""Shared fixtures: the real crack data, the ImageNet extractor, small real subsets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from selection.extractors import EncoderExtractor, imagenet_extractor
from tests.availability import unavailable

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
