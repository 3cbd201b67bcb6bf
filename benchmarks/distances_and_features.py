"""Benchmark: chunked I_dist against one BLAS matmul, and feature extraction speed.

Prints, for this machine:
- I_dist for a synthetic m x n x z case (default 100,000 x 10,000 x 25) as a ratio to one
  float64 matmul of the same shapes (S @ P.T, the whole m x n product materialised), and the
  peak extra resident memory of the I_dist call (measured before the matmul runs);
- feature extraction images/s at 448 x 448 on real images (no cache), with 16 images per
  encoder pass and with one, and on onnxruntime (one per pass; the backend serves torch's),
  with the ratios.

Usage: python benchmarks/distances_and_features.py [--m 100000 --n 10000 --z 25]
       [--images N] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from selection.distances import image_to_dataset_distances
from selection.embed import embed_paths
from selection.extractors import imagenet_extractor
from selection.images import list_images
from selection.onnx_features import OnnxExtractor


def rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_distances(m: int, n: int, z: int) -> None:
    rng = np.random.default_rng(0)
    s = rng.standard_normal((m, z))
    p = rng.standard_normal((n, z))
    image_to_dataset_distances(s[:100], p)  # warm-up (threads, allocator)
    before = rss_peak_mib()
    t0 = time.perf_counter()
    image_to_dataset_distances(s, p)
    t_idist = time.perf_counter() - t0
    extra = rss_peak_mib() - before

    out = np.empty((m, n))  # allocate and touch first: time the product, not page faults
    out.fill(0.0)
    t0 = time.perf_counter()
    np.matmul(s, p.T, out=out)
    t_mm = time.perf_counter() - t0
    del out
    print(f"I_dist {m:,} x {n:,} x {z} (float64, {torch.get_num_threads()} threads)")
    print(f"  chunked I_dist          {t_idist:8.2f} s")
    print(f"  one matmul S @ P.T      {t_mm:8.2f} s   (float64, {m * n * 8 / 2**30:.1f} GiB out)")
    print(f"  ratio I_dist / matmul   {t_idist / t_mm:8.2f} x   (goal <= 3)")
    print(f"  peak extra memory       {extra:8.1f} MiB (goal <= 1024)")


def bench_features(data: Path, count: int) -> None:
    paths = (list_images(data / "cfd") + list_images(data / "deepcrack" / "train"))[::3][:count]
    extractor = imagenet_extractor(size=448)
    embed_paths(paths[:4], extractor)  # warm-up
    rate = {}
    for per_pass in (16, 1):
        extractor.forward_batch = per_pass
        t0 = time.perf_counter()
        result = embed_paths(paths, extractor, cache=None, batch_size=16)
        dt = time.perf_counter() - t0
        rate[per_pass] = len(result.paths) / dt
        print(f"features: {len(result.paths)} real images (cfd + deepcrack) at 448, "
              f"{per_pass} per encoder pass: {rate[per_pass]:6.2f} images/s ({dt:.1f} s, "
              "decode + resize included)")  # fmt: skip
    print(f"  one per pass / 16 per pass: {rate[1] / rate[16]:.2f}x")
    with tempfile.TemporaryDirectory() as folder:
        fast = OnnxExtractor(extractor, folder)
        embed_paths(paths[:4], fast)  # warm-up
        t0 = time.perf_counter()
        result = embed_paths(paths, fast, cache=None, batch_size=16)
        dt = time.perf_counter() - t0
    rate["onnx"] = len(result.paths) / dt
    print(f"features on onnxruntime (one per pass): {rate['onnx']:6.2f} images/s ({dt:.1f} s)")
    print(f"  onnxruntime / torch (one per pass): {rate['onnx'] / rate[1]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=100_000)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--z", type=int, default=25)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared/data")
    args = parser.parse_args()
    bench_distances(args.m, args.n, args.z)
    if args.images > 0:
        bench_features(args.data, args.images)


if __name__ == "__main__":
    main()
