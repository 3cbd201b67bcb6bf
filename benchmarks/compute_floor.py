"""How fast could this CPU be at all? The arithmetic floor of the scale targets.

Counts the floating-point operations of the work each target needs (torch's
`FlopCounterMode`, the shipped model and tiling) and divides them by the rate this machine
reaches on the kind of work that runs closest to peak: one large dense matrix product
(fp32, all of torch's threads; and int8 through fbgemm's dynamically quantised linear
layer, the fastest int8 path here). The floor is the time at that rate, counting direct
convolution's multiplies (element-wise work is not counted); engines run convolutions
below a matrix product's rate, so a target under its floor is out of reach here unless
an algorithm needs fewer multiplies (e.g. Winograd for 3 x 3 convolutions).

    .venv/bin/python benchmarks/compute_floor.py [--encoder tu-tf_efficientnet_lite0]
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from selection.images import list_images
from training.model import DEFAULT_ENCODER, build_model
from training.predict import OVERLAP, STRIDE, TILE, _tile_origins

FEATURE_SIDE = 448  # the feature extractor's input side (selection's default)
PHOTO_12MP = (3000, 4000)  # height, width
SCALE_SETS = ("crack500", "gaps384", "cfd", "bsds500")  # benchmarks/project_scale.py's images
TASKS = 2000
TARGETS = {  # what the scale issue asks, in seconds
    "features, 1 image at 448 px": 1 / 25,
    "mask of a 12 MP photo": 5.0,
    f"cold scoring of {TASKS:,} tasks (project_scale's images)": 180.0,
}


def flops(fn, *args) -> int:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        fn(*args)
    return counter.get_total_flops()


def mask_flops(model: nn.Module, h: int, w: int) -> int:
    """Operations of the full-resolution mask of an h x w image, tiled as `predict_probs`
    tiles it (each tile padded to the encoder's stride)."""
    origins = _tile_origins(h, w, TILE, OVERLAP)
    return sum(_forward_flops(model, min(TILE, h - y), min(TILE, w - x)) for y, x in origins)


@functools.cache
def _forward_flops(model: nn.Module, th: int, tw: int) -> int:
    side = lambda n: -(-n // STRIDE) * STRIDE  # noqa: E731
    return flops(model, torch.zeros(1, 3, side(th), side(tw)))


def best_rate(fn, ops: float, repeats: int = 5) -> float:
    """Operations per second of `fn` (the best of `repeats` timed calls after a warm-up)."""
    fn()
    best = min(_timed(fn) for _ in range(repeats))
    return ops / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def fp32_gemm_rate(n: int = 2048) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    return best_rate(lambda: torch.mm(a, b), 2 * n**3)


def int8_gemm_rate(n: int = 2048) -> float:
    layer = torch.ao.quantization.quantize_dynamic(
        torch.nn.Sequential(torch.nn.Linear(n, n, bias=False)), {torch.nn.Linear}, torch.qint8
    )
    x = torch.randn(n, n)
    with torch.inference_mode():
        return best_rate(lambda: layer(x), 2 * n**3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default=DEFAULT_ENCODER)
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared/data")
    args = parser.parse_args()
    model = build_model(args.encoder, pretrained=None).eval()
    feature = flops(model.encoder, torch.zeros(1, 3, FEATURE_SIDE, FEATURE_SIDE))
    tile = flops(model, torch.zeros(1, 3, TILE, TILE))
    tile_encoder = flops(model.encoder, torch.zeros(1, 3, TILE, TILE))
    tiles_12mp = len(_tile_origins(*PHOTO_12MP, TILE, OVERLAP))
    sizes = []
    for name in SCALE_SETS:
        for path in list_images(args.data / name):
            with Image.open(path) as img:
                sizes.append((img.height, img.width))
    masks = [mask_flops(model, h, w) for h, w in sizes]
    mean_mask = sum(masks[k % len(masks)] for k in range(TASKS)) / TASKS
    work = {
        "features, 1 image at 448 px": feature,
        "mask of a 12 MP photo": tile * tiles_12mp,
        f"cold scoring of {TASKS:,} tasks (project_scale's images)": TASKS * (feature + mean_mask),
    }
    fp32, int8 = fp32_gemm_rate(), int8_gemm_rate()
    print(f"torch threads {torch.get_num_threads()}, encoder {args.encoder}")
    print(f"GFLOP: features at {FEATURE_SIDE} px {feature / 1e9:.2f}; one {TILE} px tile "
          f"{tile / 1e9:.2f} (encoder {tile_encoder / 1e9:.2f}, decoder and head "
          f"{(tile - tile_encoder) / 1e9:.2f}); a 12 MP photo {tiles_12mp} tiles")  # fmt: skip
    print(f"attainable here: fp32 GEMM {fp32 / 1e9:.0f} GFLOP/s, int8 GEMM {int8 / 1e9:.0f} GOP/s")
    print(f"mask of one of project_scale's images: {mean_mask / 1e9:.2f} GFLOP on average")
    head = f"{'work':56s} {'GFLOP':>9s} {'target s':>9s}"
    print(f"\n{head} {'fp32 floor s':>13s} {'int8 floor s':>13s}")
    for name, ops in work.items():
        print(
            f"{name:56s} {ops / 1e9:9.1f} {TARGETS[name]:9.2f} {ops / fp32:13.2f} "
            f"{ops / int8:13.2f}"
        )


if __name__ == "__main__":
    main()
