"""Would a threshold that matches the labels' crack fraction on the pool serve better?

Replayed on `adaptation_queue.py`'s saved counts (its CSV and `counts/*.npz`, every image of
the set under each candidate and the base version). For each case, pooled F on the images
never labelled at:
- `served`: the threshold the backend serves (`training.threshold_choice`, all k labels);
- `matched`: the threshold at which the predicted crack pixels over those unlabelled
  images are the labels' crack fraction of their pixels (no label of theirs used; only
  what the labelled images show);
- `matched, moved`: that threshold moved from the version's own as the served rule moves
  its refit (k / (k + 7) of the way in log-odds);
- `oracle`: their best threshold (ODS).
Differences to `served` are paired by draw, 95 % t over draws. The base version's rows
use the same picks, with its own threshold given as `--base-threshold`.

    .venv/bin/python benchmarks/threshold_pool_fraction.py --runs results/adaptation/queue.csv \\
        --base-threshold 0.74 [--counts DIR] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image

from training.campaign_report import t_interval
from training.data import find_samples
from training.metrics import COUNT_FIELDS, THRESHOLDS, Counts, pooled_f, scores
from training.threshold_choice import choose_threshold, moved_threshold

RULES = ("served", "matched", "matched, moved", "oracle")


def matched_threshold(pool: Counts, pool_pixels: int, crack_fraction: float) -> float:
    """The grid threshold at which `pool`'s predicted crack pixels come nearest to
    `crack_fraction` of its `pool_pixels`."""
    predicted = (pool.tp + pool.fp).sum(0).astype(float)
    return float(THRESHOLDS[int(np.argmin(np.abs(predicted - crack_fraction * pool_pixels)))])


def rule_f(counts: Counts, pixels: np.ndarray, picked: np.ndarray, own: float) -> dict:
    """Pooled F on the images not in `picked` under each rule."""
    rest = np.setdiff1d(np.arange(len(pixels)), picked)
    labelled, pool = counts.subset(picked), counts.subset(rest)
    chosen = choose_threshold(labelled, own).threshold
    fraction = float((labelled.found[:, 0] + labelled.fn[:, 0]).sum() / pixels[picked].sum())
    matched = matched_threshold(pool, int(pixels[rest].sum()), fraction)
    return {
        "served": pooled_f(pool, own if chosen is None else chosen),
        "matched": pooled_f(pool, matched),
        "matched, moved": pooled_f(pool, moved_threshold(matched, own, len(picked))),
        "oracle": scores(pool).ods,
    }


def image_pixels(data: Path, set_name: str) -> np.ndarray:
    """Pixels of each image of the set, in the order the counts hold them."""
    sizes = [Image.open(s.mask).size for s in find_samples(data / set_name)]
    return np.array([w * h for w, h in sizes], dtype=np.int64)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, required=True, help="adaptation_queue.py's CSV")
    p.add_argument("--counts", type=Path, help="its counts folder (default: beside --runs)")
    p.add_argument("--base-threshold", type=float, required=True, help="the base's own")
    p.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared/data")
    args = p.parse_args()
    counts_dir = args.counts or args.runs.parent / "counts"
    cases: dict[tuple[str, int, str], list[dict]] = {}
    pixels: dict[str, np.ndarray] = {}
    based: set[tuple[str, str, str]] = set()
    missing: list[str] = []
    with args.runs.open() as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        name, draw, k, arm = r["set"], r["draw"], r["labels"], r["arm"]
        path = counts_dir / f"{name}-d{draw}-k{k}-{arm}.npz"
        if not path.exists():
            missing.append(f"{name} d{draw} k{k} {arm}")
            continue
        if name not in pixels:
            pixels[name] = image_pixels(args.data, name)
        saved, base = np.load(path), np.load(counts_dir / f"{name}-base.npz")
        exact = Counts(*(saved[f"exact_{f}"] for f in COUNT_FIELDS))
        picked = saved["picked"]
        cases.setdefault((name, int(k), arm), []).append(
            rule_f(exact, pixels[name], picked, float(r["own"]))
        )
        if (name, draw, k) not in based:  # the base version with the same picks
            based.add((name, draw, k))
            base_exact = Counts(*(base[f"exact_{f}"] for f in COUNT_FIELDS))
            cases.setdefault((name, int(k), "(base version)"), []).append(
                rule_f(base_exact, pixels[name], picked, args.base_threshold)
            )
    if not cases:
        raise SystemExit(f"no counts in {counts_dir} for the rows of {args.runs}")
    if missing:
        print(f"rows without counts in {counts_dir}, left out ({len(missing)}): "
              + ", ".join(missing))  # fmt: skip
    print(f"{'set':8s} {'labels':>6s} {'arm':15s} {'draws':>5s} "
          + " ".join(f"{r:>14s}" for r in RULES)
          + "   matched - served [95 % t]   moved - served [95 % t]")  # fmt: skip
    for (name, k, arm), got in sorted(cases.items()):
        means = " ".join(f"{np.mean([g[r] for g in got]):14.3f}" for r in RULES)
        diffs = [
            "{:+.3f} [{:+.3f}, {:+.3f}]".format(
                *t_interval(np.array([g[rule] - g["served"] for g in got]))
            )
            for rule in ("matched", "matched, moved")
        ]
        print(f"{name:8s} {k:6d} {arm:15s} {len(got):5d} {means}   {diffs[0]:26s}  {diffs[1]}")


if __name__ == "__main__":
    main()
