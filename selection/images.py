"""Finding image files in a folder and reading them as 8-bit RGB arrays."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})

# Refuse decompression bombs early but allow large survey photos (about 16k x 16k).
Image.MAX_IMAGE_PIXELS = 256_000_000


class DatasetError(ValueError):
    """A folder that cannot be used as an image set (missing, not a folder, no images)."""


class ImageReadError(ValueError):
    """One image file that could not be decoded; `path` names it, the message says why."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def image_folder(folder: Path | str) -> Path:
    """The folder that holds a set's images: `folder/images` when it exists, else `folder`."""
    folder = Path(folder)
    if not folder.exists():
        raise DatasetError(f"folder not found: {folder}")
    if not folder.is_dir():
        raise DatasetError(f"not a folder: {folder}")
    nested = folder / "images"
    return nested if nested.is_dir() else folder


def list_images(folder: Path | str) -> list[Path]:
    """Image files of a set (jpg/png/tif/bmp, any case), sorted by name.

    `folder` is either a plain folder of images or a dataset folder with `images/` (and
    `masks/`) inside, as in `../shared/data`. Raises DatasetError when there are none.
    """
    root = image_folder(folder)
    paths = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise DatasetError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {root}")
    return paths


def content_hash(data: bytes) -> str:
    """SHA-256 hex digest of a file's bytes: the identity of an image in every cache."""
    return hashlib.sha256(data).hexdigest()


def decode_rgb(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes into an H x W x 3 uint8 array.

    EXIF orientation is applied. Grayscale, palette, RGBA/LA (alpha dropped), CMYK and
    16-bit or float images are accepted; high bit depths are scaled to 0-255.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb8(img)
    except UnidentifiedImageError as exc:
        raise ImageReadError(name, "not a recognised image format") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(name, f"cannot decode image ({exc})") from exc
    except Image.DecompressionBombError as exc:
        raise ImageReadError(name, str(exc)) from exc


def read_rgb(path: Path | str) -> np.ndarray:
    """Read an image file into an H x W x 3 uint8 array (see `decode_rgb`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(path, f"cannot read file ({exc.strerror or exc})") from exc
    return decode_rgb(data, str(path))


def _to_rgb8(img: Image.Image) -> np.ndarray:
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode != "F" and arr.max(initial=0) > 255 else 255.0
        if img.mode == "F":
            lo, hi = float(arr.min(initial=0)), float(arr.max(initial=0))
            arr, top = arr - lo, (hi - lo) or 1.0
        gray = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode != "RGB":
        img = img.convert("RGB")
    arr = np.array(img, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"unexpected image shape {arr.shape}")
    return arr
