"""Adapting with the encoder frozen vs fine-tuned: F on each new set, and seconds per adapt.

For every set, seed and label budget: the same labels (drawn at random from the set's pool
part, nested across budgets) adapt the same base model twice from the same seed, once
fine-tuning every layer and once with the encoder frozen (`TrainConfig.freeze_encoder`),
each for the backend's adaptation settings (`TrainConfig.adapt()`, P plus the labels); both
are scored on the set's test part (pooled ODS). A frozen encoder keeps the parent's
features, so the backend need not re-embed P and the pool after such a retrain.

Resumable: each finished case is a row of `--out` (CSV); a restart skips them. The summary
gives the paired difference (frozen - full) per set and budget with a 95 % t interval.

    .venv/bin/python benchmarks/adaptation_encoder.py --registry REG \\
        --train ../shared/data/deepcrack/train --sets ../shared/data/cfd ../shared/data/gaps384
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
from scipy import stats

from training.campaign import grouped_split
from training.data import find_samples, load
from training.evaluate import evaluate
from training.registry import Registry
from training.train import TrainConfig, train

COLUMNS = ("set", "seed", "budget", "arm", "ods", "threshold", "train_seconds", "steps")
ARMS = {"full": False, "frozen": True}


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as fh:
        return list(csv.DictReader(fh))


def append_row(path: Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def summary(rows: list[dict]) -> None:
    print(
        "\nset       labels  full   frozen  frozen-full [95% CI]      p      seeds"
        "  seconds full/frozen"
    )
    keys = sorted({(r["set"], int(r["budget"])) for r in rows if int(r["budget"]) > 0})
    for name, budget in keys:
        by_seed: dict[int, dict[str, dict]] = {}
        for r in rows:
            if r["set"] == name and int(r["budget"]) == budget:
                by_seed.setdefault(int(r["seed"]), {})[r["arm"]] = r
        pairs = [v for v in by_seed.values() if set(v) == set(ARMS)]
        if not pairs:
            continue
        full = np.array([float(p["full"]["ods"]) for p in pairs])
        frozen = np.array([float(p["frozen"]["ods"]) for p in pairs])
        diff = frozen - full
        if len(diff) > 1 and diff.std(ddof=1) > 0:
            half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
            p = stats.ttest_rel(frozen, full).pvalue
            interval, pv = f"[{diff.mean() - half:+.3f}, {diff.mean() + half:+.3f}]", f"{p:.3f}"
        else:
            interval, pv = "(one seed)", "-"
        secs = [np.mean([float(p[a]["train_seconds"]) for p in pairs]) for a in ARMS]
        print(
            f"{name:9s} {budget:6d}  {full.mean():.3f}  {frozen.mean():.3f}   "
            f"{diff.mean():+.3f} {interval:20s} {pv:6s} {len(pairs):5d}  "
            f"{secs[0]:.0f}/{secs[1]:.0f}"
        )
    for name in sorted({r["set"] for r in rows if int(r["budget"]) == 0}):
        base = next(r for r in rows if r["set"] == name and int(r["budget"]) == 0)
        print(f"{name}: base model ODS {float(base['ods']):.3f} on the test part")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--registry", type=Path, required=True, help="the base model's registry")
    p.add_argument("--train", type=Path, required=True, help="P, with masks")
    p.add_argument("--sets", type=Path, nargs="+", required=True, help="new sets, with masks")
    p.add_argument("--budgets", type=int, nargs="+", default=[3, 7])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--test-share", type=float, default=0.5, help="share of each set tested on")
    p.add_argument("--out", type=Path, default=Path("results/adaptation/encoder.csv"))
    args = p.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = read_rows(args.out)
    done = {(r["set"], r["seed"], r["budget"], r["arm"]) for r in rows}
    registry = Registry(args.registry)
    base_version = registry.resolve("current")
    base_items = load(find_samples(args.train))
    for folder in args.sets:
        samples = find_samples(folder)
        name = samples[0].set_name
        test_samples, pool_samples = grouped_split(
            samples, round(len(samples) * args.test_share), seed=0
        )
        tests, pool = load(test_samples), load(pool_samples)
        if (name, "0", "0", "base") not in done:
            loaded = registry.load(base_version)
            ev = evaluate(loaded.model, loaded.encoder, tests)
            row = dict(
                set=name,
                seed=0,
                budget=0,
                arm="base",
                ods=f"{ev.scores.ods:.4f}",
                threshold=ev.scores.ods_threshold,
                train_seconds=0,
                steps=0,
            )
            append_row(args.out, row)
            rows.append({k: str(v) for k, v in row.items()})
        for seed in range(args.seeds):
            order = np.random.default_rng(1000 + seed).permutation(len(pool))
            for budget in sorted(args.budgets):
                labels = [pool[i] for i in order[:budget]]
                for arm, frozen in ARMS.items():
                    if (name, str(seed), str(budget), arm) in done:
                        continue
                    loaded = registry.load(base_version)
                    config = TrainConfig.adapt(seed=seed, freeze_encoder=frozen)
                    start = time.monotonic()
                    result = train(
                        loaded.model, loaded.encoder, base_items, [], config, labels, progress=False
                    )
                    seconds = time.monotonic() - start
                    ev = evaluate(loaded.model, loaded.encoder, tests)
                    row = dict(
                        set=name,
                        seed=seed,
                        budget=budget,
                        arm=arm,
                        ods=f"{ev.scores.ods:.4f}",
                        threshold=ev.scores.ods_threshold,
                        train_seconds=f"{seconds:.1f}",
                        steps=result.steps,
                    )
                    append_row(args.out, row)
                    rows.append({k: str(v) for k, v in row.items()})
                    print(
                        f"{name} seed {seed} labels {budget} {arm}: ODS {row['ods']} "
                        f"({seconds:.0f} s training)",
                        flush=True,
                    )
    summary(rows)


if __name__ == "__main__":
    main()
