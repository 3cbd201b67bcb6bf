"""Two base models compared on sets neither trained on: ODS of each per set, and the paired
difference with a 95 % bootstrap interval over the set's images (each resample scores both
models on the same images). The interval covers which images a set happens to hold, for
these two trained models; it says nothing of training seeds (train more seeds for that).

    .venv/bin/python benchmarks/base_holdout.py --registries REG_A REG_B
        [--sets cfd gaps384 large crack500] [--resamples 2000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from training.data import find_samples, load
from training.evaluate import evaluate
from training.metrics import COUNT_FIELDS, Counts, prf
from training.registry import Registry


def ods(counts: Counts, rows: np.ndarray | None = None) -> float:
    """Pooled F at the best threshold over the images `rows` (all by default)."""
    totals = [getattr(counts, k)[rows if rows is not None else slice(None)].sum(0)
              for k in COUNT_FIELDS]  # fmt: skip
    return float(prf(*totals)[2].max())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--registries", type=Path, nargs=2, required=True, metavar="REG")
    p.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared/data")
    p.add_argument("--sets", nargs="+", default=["cfd", "gaps384", "large", "crack500"])
    p.add_argument("--resamples", type=int, default=2000)
    args = p.parse_args()
    models = [Registry(root).load("current") for root in args.registries]
    for root, loaded in zip(args.registries, models, strict=True):
        val = loaded.meta.get("metrics", {}).get("val", {})
        training = loaded.meta.get("training", {})
        config = training.get("config", {})
        print(
            f"{root}: {loaded.version}, validation ODS {val.get('ods', float('nan')):.4f}, "
            f"threshold {loaded.threshold}, {training.get('steps')} steps, seed "
            f"{config.get('seed')}, skeleton recall {config.get('skeleton_recall', 0.0)}"
        )
    print(f"\n{'set':8s} {'images':>6s}  {'ODS A':>6s}  {'ODS B':>6s}  B - A [95 % bootstrap]")
    rng = np.random.default_rng(0)
    for name in args.sets:
        items = load(find_samples(args.data / name))
        a, b = (evaluate(m.model, m.encoder, items).counts for m in models)
        n = len(items)
        draws = [rng.integers(0, n, n) for _ in range(args.resamples)]
        diffs = np.array([ods(b, rows) - ods(a, rows) for rows in draws])
        low, high = np.percentile(diffs, [2.5, 97.5])
        print(f"{name:8s} {n:6d}  {ods(a):6.3f}  {ods(b):6.3f}  {ods(b) - ods(a):+.3f} "
              f"[{low:+.3f}, {high:+.3f}]", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
