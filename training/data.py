"""Image/mask pairs on disk, held in memory, and augmented random crops for training.

Layout (as `../shared/data`): `<set>/images/<stem>.*` and `<set>/masks/<stem>.png`, 8-bit,
255 = crack, same size as the image. A set without a `masks/` folder is crack-free: its
masks are empty (the paper's appendix C uses such images to suppress false positives).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from selection.images import DatasetError, content_hash, image_folder, list_images, read_rgb


@dataclass(frozen=True)
class Sample:
    """One training/evaluation image; `mask` None means crack-free (an empty mask)."""

    image: Path
    mask: Path | None
    set_name: str


@dataclass
class Loaded:
    """A sample decoded into memory."""

    sample: Sample
    image: np.ndarray  # H x W x 3 uint8
    mask: np.ndarray  # H x W bool

    @cached_property
    def sha256(self) -> str:
        """The content hash of the image file (read once, when first asked)."""
        return content_hash(self.sample.image.read_bytes())


def set_name_of(folder: Path | str) -> str:
    folder = Path(folder)
    return folder.parent.name if folder.name == "images" else folder.name


def find_samples(folder: Path | str, set_name: str | None = None) -> list[Sample]:
    """Pair each image of a set with `masks/<stem>.png`.

    No `masks/` folder: every image is crack-free. A `masks/` folder that lacks some masks
    is an error naming them (a silently empty mask would teach the model to miss cracks).
    """
    folder = Path(folder)
    images = list_images(folder)
    root = image_folder(folder)
    masks = (root.parent if root.name == "images" else root) / "masks"
    name = set_name or set_name_of(folder)
    if not masks.is_dir():
        return [Sample(p, None, name) for p in images]
    samples, missing = [], []
    for path in images:
        mask = masks / f"{path.stem}.png"
        if not mask.exists():
            missing.append(path.name)
        samples.append(Sample(path, mask, name))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DatasetError(f"{masks}: no mask for {len(missing)} image(s): {shown}")
    return samples


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A mask file as bool (pixel > 127 = crack), checked against the image size."""
    with Image.open(path) as img:
        mask = np.asarray(img.convert("L")) > 127
    if mask.shape != shape:
        raise DatasetError(f"{path}: mask is {mask.shape[::-1]}, image is {shape[::-1]} (W x H)")
    return mask


def load(samples: Sequence[Sample], desc: str | None = None) -> list[Loaded]:
    """Decode every sample into memory."""
    out = []
    for s in tqdm(samples, desc=desc, unit="img", disable=desc is None, leave=False):
        image = read_rgb(s.image)
        shape = image.shape[:2]
        mask = read_mask(s.mask, shape) if s.mask else np.zeros(shape, dtype=bool)
        out.append(Loaded(s, image, mask))
    return out


def random_crop(
    item: Loaded,
    size: int,
    rng: np.random.Generator,
    augment: bool = True,
    on_crack: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """A size x size crop (reflect-padded when the image is smaller) with flips, 90-degree
    rotations and mild brightness/contrast changes. Returns float32 image in [0, 1] (HWC)
    and float32 mask. `on_crack`: the crop covers a crack pixel drawn at random (where the
    mask has one), at a random place within the crop."""
    image, mask = item.image, item.mask
    h, w = mask.shape
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        pad = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2))
        image = np.pad(image, (*pad, (0, 0)), mode="reflect" if min(h, w) > 1 else "edge")
        mask = np.pad(mask, pad, mode="reflect" if min(h, w) > 1 else "edge")
        h, w = mask.shape
    crack = np.flatnonzero(mask) if on_crack else ()
    if len(crack):
        cy, cx = divmod(int(crack[rng.integers(0, len(crack))]), w)
        y = int(rng.integers(max(0, cy - size + 1), min(h - size, cy) + 1))
        x = int(rng.integers(max(0, cx - size + 1), min(w - size, cx) + 1))
    else:
        y = int(rng.integers(0, h - size + 1))
        x = int(rng.integers(0, w - size + 1))
    img = image[y : y + size, x : x + size].astype(np.float32) / 255.0
    msk = mask[y : y + size, x : x + size].astype(np.float32)
    if augment:
        if rng.random() < 0.5:
            img, msk = img[:, ::-1], msk[:, ::-1]
        if rng.random() < 0.5:
            img, msk = img[::-1], msk[::-1]
        k = int(rng.integers(0, 4))
        img, msk = np.rot90(img, k), np.rot90(msk, k)
        contrast = rng.uniform(0.8, 1.2)
        brightness = rng.uniform(-0.1, 0.1)
        img = np.clip((img - 0.5) * contrast + 0.5 + brightness, 0.0, 1.0)
    return np.ascontiguousarray(img), np.ascontiguousarray(msk)


def batch_tensors(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (image, mask) crops into N x 3 x H x W and N x 1 x H x W float tensors."""
    images = torch.from_numpy(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2)
    masks = torch.from_numpy(np.stack([p[1] for p in pairs]))[:, None]
    return images.contiguous(), masks
