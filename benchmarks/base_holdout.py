"""Two base models compared on sets neither trained on, per set: ODS (each model at the
set's best threshold), and F at each model's own threshold (what a project's
pre-annotations get before any label), with the paired difference and a 95 % bootstrap
interval over the set's images (each resample scores both models on the same images). The
interval covers which images a set happens to hold, for these two trained models; it says
nothing of training seeds (train more seeds for that), and little for a set of a few images.

    .venv/bin/python benchmarks/base_holdout.py --registries REG_A REG_B
        [--sets cfd gaps384 large crack500] [--resamples 2000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from training.data import find_samples, load
from training.evaluate import evaluate
from training.metrics import pooled_f
from training.registry import Registry


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--registries", type=Path, nargs=2, required=True, metavar="REG")
    p.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared/data")
    p.add_argument("--sets", nargs="+", default=["cfd", "gaps384", "large", "crack500"])
    p.add_argument("--resamples", type=int, default=2000)
    args = p.parse_args()
    models = [Registry(root).load("current") for root in args.registries]
    thresholds = tuple(m.threshold for m in models)
    for root, loaded in zip(args.registries, models, strict=True):
        val = loaded.meta.get("metrics", {}).get("val", {})
        training = loaded.meta.get("training", {})
        config = training.get("config", {})
        print(
            f"{root}: {loaded.version}, validation ODS {val.get('ods', float('nan')):.4f}, "
            f"threshold {loaded.threshold}, {training.get('steps')} steps, seed "
            f"{config.get('seed')}, skeleton recall {config.get('skeleton_recall', 0.0)}"
        )
    print(f"\n{'set':8s} {'images':>6s}  {'score':14s} {'A':>6s} {'B':>6s}  B - A [95 % bootstrap]")
    rng = np.random.default_rng(0)
    for name in args.sets:
        items = load(find_samples(args.data / name))
        a, b = (evaluate(m.model, m.encoder, items).counts for m in models)
        n = len(items)
        draws = [rng.integers(0, n, n) for _ in range(args.resamples)]
        for score, (ta, tb) in (("ODS", (None, None)), ("F at its own", thresholds)):
            diffs = [pooled_f(b.subset(r), tb) - pooled_f(a.subset(r), ta) for r in draws]
            low, high = np.percentile(diffs, [2.5, 97.5])
            fa, fb = pooled_f(a, ta), pooled_f(b, tb)
            print(f"{name:8s} {n:6d}  {score:14s} {fa:6.3f} {fb:6.3f}  {fb - fa:+.3f} "
                  f"[{low:+.3f}, {high:+.3f}]", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
