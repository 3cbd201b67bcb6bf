"""Crack masks on torch against onnxruntime, on this machine, in one run.

Prints the export and load times, then, with both engines on as many threads as torch
uses (as served) and on one thread: the seconds of one 512 x 512 tile (median of --repeats
after a warm-up) with the max abs probability difference, and the seconds of one 12 MP photo
at full resolution (a real road photo from `large/` upscaled to 4000 x 3000: 63 tiles).
onnxruntime runs the whole photo; torch's time is its tile time x the tile count plus the
tiling/blending time measured on the onnxruntime run (the same code), unless --torch-full
runs it too (minutes). About 2.5 minutes on 2 cores without --torch-full.

On a CPU that other work keeps busy, torch's OpenMP threads lose most of their time
waiting for each other (seen here: 4.3 s a tile on 2 threads, 0.9 s on 1): compare the
one-thread line too before reading the ratio as the engines' difference.

    .venv/bin/python benchmarks/onnx_inference.py [--registry DIR] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from selection.images import read_rgb
from training.model import build_model
from training.onnx_model import OnnxRunner, load_runner
from training.predict import _tile_origins, predict_probs
from training.registry import Registry


class Timed:
    """A runner that adds up the seconds spent inside onnxruntime."""

    def __init__(self, runner) -> None:
        self.runner, self.seconds = runner, 0.0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.runner(x)
        self.seconds += time.perf_counter() - t0
        return out


def seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, help="default: a fresh UNet++ (same speed)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--torch-full", action="store_true", help="run torch on the 12 MP too")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="onnx-bench-"))
    try:
        run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, tmp: Path) -> None:
    if args.registry is None:
        registry = Registry(tmp / "registry")
        meta = {"encoder": "tu-tf_efficientnet_lite0", "threshold": 0.5}
        registry.register(build_model().state_dict(), meta, make_current=True)
    else:
        registry = Registry(args.registry)
    loaded = registry.load("current")
    loaded.model.cpu()  # a CPU comparison, also on a machine with a GPU
    model, encoder = loaded.model, loaded.encoder
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; model {loaded.version}")

    t0 = time.perf_counter()
    load_runner(loaded, tmp / "cache")
    export = time.perf_counter() - t0
    t0 = time.perf_counter()
    runner = load_runner(loaded, tmp / "cache")
    print(
        f"export + load + check: {export:.1f} s; cached load + check: "
        f"{time.perf_counter() - t0:.1f} s"
    )

    photo = sorted((args.data / "large" / "images").glob("*.jpg"))[0]
    image = read_rgb(photo)
    tile = np.ascontiguousarray(image[:512, :512])
    big = np.array(Image.fromarray(image).resize((4000, 3000), Image.BILINEAR))
    tiles = len(_tile_origins(3000, 4000, 512, 64))
    serving_threads = torch.get_num_threads()
    for threads in sorted({1, serving_threads}, reverse=True):
        torch.set_num_threads(threads)
        ort_runner = OnnxRunner(runner.path, threads=threads)
        label = f"{threads} thread{'s' if threads > 1 else ''}"
        if threads == serving_threads:
            label += " (as served)"
        t_torch = seconds(lambda: predict_probs(model, tile, encoder), args.repeats)
        t_onnx = seconds(
            lambda r=ort_runner: predict_probs(model, tile, encoder, runner=r), args.repeats
        )
        diff = np.abs(
            predict_probs(model, tile, encoder)
            - predict_probs(model, tile, encoder, runner=ort_runner)
        ).max()
        print(
            f"[{label}] one 512x512 tile of {photo.name}: torch {t_torch:.2f} s, "
            f"onnxruntime {t_onnx:.2f} s, ratio {t_torch / t_onnx:.1f}x; "
            f"max abs difference {diff:.1e}"
        )
        timed = Timed(ort_runner)
        t0 = time.perf_counter()
        probs_onnx = predict_probs(model, big, encoder, runner=timed)
        onnx_12mp = time.perf_counter() - t0
        overhead = onnx_12mp - timed.seconds  # everything but the network: tiling, blending
        if args.torch_full:
            t0 = time.perf_counter()
            probs_torch = predict_probs(model, big, encoder)
            torch_12mp, how = time.perf_counter() - t0, "measured"
            how += f", max abs difference {np.abs(probs_torch - probs_onnx).max():.1e}"
        else:
            torch_12mp = t_torch * tiles + overhead
            how = f"estimated: {tiles} x {t_torch:.2f} s + {overhead:.1f} s tiling/blending"
        print(
            f"[{label}] one 12 MP photo (4000x3000, {tiles} tiles): onnxruntime "
            f"{onnx_12mp:.1f} s ({timed.seconds:.1f} s in the network), torch "
            f"{torch_12mp:.0f} s ({how}), ratio {torch_12mp / onnx_12mp:.1f}x"
        )
    torch.set_num_threads(serving_threads)


if __name__ == "__main__":
    main()
