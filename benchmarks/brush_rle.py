"""Benchmark: brush RLE of crack masks, label-studio-sdk's `mask2rle` against the numpy one.

Prints, for each mask, both encoders' seconds (best of --repeat), their ratio and the RLE
size, and asserts the two outputs are identical. Masks: a ~1 MP crop of a real large mask
(`large/masks`, 1920 x 1080; a CFD mask upscaled when large/ is absent), that mask upscaled
to 12 MP (4000 x 3000), and 12 MP and 20 MP (5472 x 3648) mosaics of real Crack500 masks
(many coarse cracks, so many more runs: the SDK's time grows with the runs).

    .venv/bin/python benchmarks/brush_rle.py [--data ../shared/data] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from label_studio_sdk.converter.brush import mask2rle
from PIL import Image

from backend.brush import mask_rle

MP12 = (3000, 4000)  # H x W
MP20 = (3648, 5472)


def read(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("L")) > 127


def resize(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask to (H, W)."""
    img = Image.fromarray(mask).resize(shape[::-1], Image.Resampling.NEAREST)
    return np.asarray(img)


def masks(data: Path) -> dict[str, np.ndarray]:
    large = sorted((data / "large" / "masks").glob("*.png"))
    if large:
        base, name = read(large[0]), f"large/{large[0].name}"
    else:
        cfd = sorted((data / "cfd" / "masks").glob("*.png"))[0]
        base, name = resize(read(cfd), (1080, 1920)), f"cfd/{cfd.name} upscaled"
    tiles = [read(p) for p in sorted((data / "crack500" / "masks").glob("*.png"))]
    th, tw = min(t.shape[0] for t in tiles), min(t.shape[1] for t in tiles)
    rows, cols = -(-MP20[0] // th), -(-MP20[1] // tw)
    grid = [tiles[i % len(tiles)][:th, :tw] for i in range(rows * cols)]
    mosaic = np.block([grid[r * cols : (r + 1) * cols] for r in range(rows)])
    return {
        f"{name}, 1280 x 800 crop": base[:800, :1280],
        f"{name} upscaled to 4000 x 3000": resize(base, MP12),
        "crack500 mosaic 4000 x 3000": mosaic[: MP12[0], : MP12[1]],
        "crack500 mosaic 5472 x 3648": mosaic[: MP20[0], : MP20[1]],
    }


def sdk_rle(mask: np.ndarray) -> list[int]:
    """What backend.brush.mask_rle was before: the SDK's encoder."""
    return [int(v) for v in mask2rle(mask.astype(np.uint8) * 255)]


def best(fn: Callable[[], list[int]], repeat: int) -> tuple[float, list[int]]:
    times, out = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    mask_rle(np.zeros((8, 8), bool))  # warm-up
    head = ("mask", "MP", "crack", "SDK s", "numpy s", "ratio", "bytes")
    print("{:44} {:>5} {:>6} {:>8} {:>8} {:>7} {:>8}".format(*head))
    for name, mask in masks(args.data).items():
        t_sdk, want = best(lambda m=mask: sdk_rle(m), args.repeat)
        t_np, got = best(lambda m=mask: mask_rle(m), args.repeat)
        assert got == want, f"{name}: outputs differ"
        print(
            f"{name:44} {mask.size / 1e6:5.1f} {mask.mean():6.2%} {t_sdk:8.3f} {t_np:8.4f}"
            f" {t_sdk / t_np:6.0f}x {len(got):8,}"
        )
    print("outputs identical: yes")


if __name__ == "__main__":
    main()
