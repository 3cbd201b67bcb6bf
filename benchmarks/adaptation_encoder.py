"""Adapting: encoder frozen or fine-tuned, rates, loss: F on each new set, seconds per adapt.

For every set, seed and label budget: the same labels (drawn at random from the set's pool
part, nested across budgets) adapt the same base model from the same seed once per arm:
fine-tuning every layer (`full`), with the encoder frozen (`TrainConfig.freeze_encoder`),
and both again with 3.3x the learning rates (`-lr1e-3`: 1e-3 for the decoder, 5e-4 for
the encoder), then with the skeleton recall term (`-skel`, training.losses) or with the
labels at half of each batch (`-added0.5`), each otherwise with the backend's adaptation
settings (`TrainConfig.adapt()`, P plus the labels); each is scored on the set's test part
(pooled ODS). A frozen encoder keeps the parent's features, so the backend need not
re-embed P and the pool after such a retrain.

Resumable: each finished case is a row of `--out` (CSV); a restart skips them. The summary
gives the paired differences of `COMPARED` per set and budget with a 95 % t interval
(`--summarise-only` prints it from the CSV alone).

    .venv/bin/python benchmarks/adaptation_encoder.py --registry REG \\
        --train ../shared/data/deepcrack/train --sets ../shared/data/cfd ../shared/data/gaps384
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from result_rows import append_row

from training.campaign import grouped_split, read_runs
from training.campaign_report import paired_p, t_interval
from training.data import find_samples, load
from training.evaluate import evaluate
from training.registry import Registry
from training.train import TrainConfig, train

COLUMNS = ("set", "seed", "budget", "arm", "ods", "threshold", "train_seconds", "steps")
SLOW, FAST = {"lr_decoder": 3e-4, "lr_encoder": 1.5e-4}, {"lr_decoder": 1e-3, "lr_encoder": 5e-4}
BCE_DICE = {"skeleton_recall": 0.0}  # the loss before session 14
ARMS = {  # name -> TrainConfig.adapt() overrides; "full" (sessions 1-12's rates) the reference
    "full": {"freeze_encoder": False, **SLOW, **BCE_DICE},
    "frozen": {"freeze_encoder": True, **SLOW, **BCE_DICE},
    "frozen-lr1e-3": {"freeze_encoder": True, **FAST, **BCE_DICE},  # session 13's retrain
    "full-lr1e-3": {"freeze_encoder": False, **FAST, **BCE_DICE},
    # session 14: thin cracks (skeleton recall, weight 1: TrainConfig.adapt() since then) and
    # twice the labels' share of each batch
    "frozen-lr1e-3-skel": {"freeze_encoder": True, **FAST, "skeleton_recall": 1.0},
    "frozen-lr1e-3-added0.5": {"freeze_encoder": True, **FAST, **BCE_DICE, "added_fraction": 0.5},
}


COMPARED = [  # (arm, reference): the paired differences printed
    ("frozen", "full"),
    ("frozen-lr1e-3", "full"),
    ("full-lr1e-3", "full"),
    ("frozen-lr1e-3", "full-lr1e-3"),  # the two rates' encoders, at the faster rates
    ("frozen-lr1e-3-skel", "frozen-lr1e-3"),
    ("frozen-lr1e-3-added0.5", "frozen-lr1e-3"),
]


def summary(rows: list[dict]) -> None:
    """Mean ODS and training seconds per arm, then each paired difference of `COMPARED`
    with its 95 % t interval and paired t-test p, per set and label budget."""
    cases: dict[tuple[str, int], dict[int, dict[str, dict]]] = {}
    for r in rows:
        if int(r["budget"]) > 0:
            by_seed = cases.setdefault((r["set"], int(r["budget"])), {})
            by_seed.setdefault(int(r["seed"]), {})[r["arm"]] = r
    print("\nset       labels  arm                     mean ODS  seeds  training s")
    for (name, budget), by_seed in sorted(cases.items()):
        for arm in ARMS:
            done = [v[arm] for v in by_seed.values() if arm in v]
            if done:
                ods = np.mean([float(r["ods"]) for r in done])
                secs = np.mean([float(r["train_seconds"]) for r in done])
                print(f"{name:9s} {budget:6d}  {arm:22s}  {ods:8.3f}  {len(done):5d}  {secs:10.0f}")
    print(f"\n{'set':9s} {'labels':6s}  {'difference':38s}  mean  [95% CI]             p   seeds")
    for (name, budget), by_seed in sorted(cases.items()):
        for arm, ref in COMPARED:
            pairs = [(float(v[arm]["ods"]), float(v[ref]["ods"])) for v in by_seed.values()
                     if arm in v and ref in v]  # fmt: skip
            if len(pairs) < 2:
                continue
            mine, theirs = np.array(pairs).T
            mean, low, high = t_interval(mine - theirs)
            print(
                f"{name:9s} {budget:6d}  {arm + ' - ' + ref:38s} {mean:+.3f} "
                f"[{low:+.3f}, {high:+.3f}]  {paired_p(mine - theirs):.3f}  {len(pairs):5d}"
            )
    for name in sorted({r["set"] for r in rows if int(r["budget"]) == 0}):
        base = next(r for r in rows if r["set"] == name and int(r["budget"]) == 0)
        print(f"{name}: base model ODS {float(base['ods']):.3f} on the test part")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--registry", type=Path, help="the base model's registry (required)")
    p.add_argument("--train", type=Path, help="P, with masks (required)")
    p.add_argument("--sets", type=Path, nargs="+", help="new sets, with masks (required)")
    p.add_argument("--budgets", type=int, nargs="+", default=[3, 7])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS), help="to run")
    p.add_argument("--test-share", type=float, default=0.5, help="share of each set tested on")
    p.add_argument("--out", type=Path, default=Path("results/adaptation/encoder.csv"))
    p.add_argument("--summarise-only", action="store_true", help="print the summary of --out")
    args = p.parse_args()
    if args.summarise_only:
        summary(read_runs(args.out))
        return
    if not (args.registry and args.train and args.sets):
        p.error("--registry, --train and --sets are required (all but --out: --summarise-only)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = read_runs(args.out)
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
            append_row(args.out, row, COLUMNS)
            rows.append({k: str(v) for k, v in row.items()})
        for seed in range(args.seeds):
            order = np.random.default_rng(1000 + seed).permutation(len(pool))
            for budget in sorted(args.budgets):
                labels = [pool[i] for i in order[:budget]]
                for arm in args.arms:
                    overrides = ARMS[arm]
                    if (name, str(seed), str(budget), arm) in done:
                        continue
                    loaded = registry.load(base_version)
                    config = TrainConfig.adapt(seed=seed, **overrides)
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
                    append_row(args.out, row, COLUMNS)
                    rows.append({k: str(v) for k, v in row.items()})
                    print(
                        f"{name} seed {seed} labels {budget} {arm}: ODS {row['ods']} "
                        f"({seconds:.0f} s training)",
                        flush=True,
                    )
    summary(rows)


if __name__ == "__main__":
    main()
