"""Full-resolution (tiled) against downscaled inference on large real crack photos.

Prints pooled ODS of both on `large/` (1920 x 1080 road-survey photos, thin cracks) and the
seconds per image, plus the time of one 12 MP photo (a large image upscaled to 4000 x 3000).

    .venv/bin/python benchmarks/full_resolution.py --registry DIR [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from training.data import find_samples, load
from training.metrics import Counts, image_counts, scores
from training.predict import predict_probs
from training.registry import Registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", required=True, type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--downscale-side", type=int, default=1024)
    args = parser.parse_args()
    loaded = Registry(args.registry).load("current")
    loaded.model.cpu()  # CPU figures, also on a machine with a GPU
    items = load(find_samples(args.data / "large"))
    for label, side in (("full resolution, tiled", None), ("downscaled", args.downscale_side)):
        counts, seconds = [], []
        for item in items:
            t0 = time.perf_counter()
            probs = predict_probs(loaded.model, item.image, loaded.encoder, max_side=side)
            seconds.append(time.perf_counter() - t0)
            counts.append(image_counts(probs, item.mask))
        s = scores(Counts.stack(counts))
        h, w = items[0].image.shape[:2]
        print(
            f"{label:24s}: ODS {s.ods:.4f} (threshold {s.ods_threshold:.2f}), "
            f"{np.mean(seconds):.2f} s per {w}x{h} image"
        )
    big = np.asarray(Image.fromarray(items[0].image).resize((4000, 3000), Image.BILINEAR))
    t0 = time.perf_counter()
    predict_probs(loaded.model, big, loaded.encoder)
    print(f"one 12 MP photo (4000x3000), tiled: {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
