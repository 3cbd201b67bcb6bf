"""A project's threshold from its first labels: the version's own, the labels' pooled ODS
threshold (sessions 10-13), or that refit only when it wins leave-one-out (shipped).

For each set: the version's per-image counts on every image (computed once), then
`--draws` random label sets of each size; each policy's threshold is applied to the
images not drawn and their pooled F is recorded. Differences are paired by draw; the
95 % t interval is over the draws, i.e. over which images a project happened to label,
for this one model (not over models; where a set has few label sets, e.g. 20 sets of 3 of
`large/`'s 6 photos, draws repeat them and the interval is too narrow). "worst 5 %" is
the 5th percentile of a policy's difference to the version's own threshold over the
draws (the projects it hurts most).

    .venv/bin/python benchmarks/threshold_refit.py --registry REG [--sets cfd gaps384 large]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from training.campaign_report import t_interval
from training.data import find_samples, load
from training.evaluate import evaluate
from training.metrics import COUNT_FIELDS, Counts, prf, scores, threshold_index
from training.registry import Registry
from training.threshold_choice import choose_threshold

POLICIES = ("version", "refit", "guarded")


def pooled_f(counts: Counts, threshold: float) -> float:
    i = threshold_index(threshold)
    return float(prf(*(getattr(counts, k)[:, i].sum() for k in COUNT_FIELDS))[2])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--registry", type=Path, required=True)
    p.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared/data")
    p.add_argument("--sets", nargs="+", default=["cfd", "gaps384", "large"])
    p.add_argument("--labels", type=int, nargs="+", default=[3, 7])
    p.add_argument("--draws", type=int, default=300)
    args = p.parse_args()
    loaded = Registry(args.registry).load("current")
    print(f"version {loaded.version}, its own threshold {loaded.threshold}")
    print(f"\n{'set':8s} {'labels':>6s} {'draws':>5s}  " + "  ".join(f"{x:>8s}" for x in POLICIES)
          + "  guarded - version         refit - version          adopted"
          + "  worst 5 %: guarded  refit")  # fmt: skip
    for name in args.sets:
        counts = evaluate(loaded.model, loaded.encoder, load(find_samples(args.data / name))).counts
        n = counts.tp.shape[0]
        rng = np.random.default_rng(0)
        for k in args.labels:
            if k >= n:
                continue
            f = {policy: [] for policy in POLICIES}
            adopted = 0
            for _ in range(args.draws):
                drawn = rng.choice(n, k, replace=False)
                rest = np.setdiff1d(np.arange(n), drawn)
                labelled, others = counts.subset(drawn), counts.subset(rest)
                choice = choose_threshold(labelled, loaded.threshold)
                adopted += choice.threshold is not None
                f["version"].append(pooled_f(others, loaded.threshold))
                refit = scores(labelled).ods_threshold  # 0 was never served: the version's
                f["refit"].append(pooled_f(others, refit if refit > 0 else loaded.threshold))
                f["guarded"].append(pooled_f(others, choice.threshold or loaded.threshold))
            means = "  ".join(f"{np.mean(f[x]):8.3f}" for x in POLICIES)
            diffs, tails = [], []
            for policy in ("guarded", "refit"):
                gain = np.array(f[policy]) - np.array(f["version"])
                mean, low, high = t_interval(gain)
                diffs.append(f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]")
                tails.append(f"{np.percentile(gain, 5):+.3f}")
            print(f"{name:8s} {k:6d} {args.draws:5d}  {means}  {diffs[0]}  {diffs[1]}  "
                  f"{adopted / args.draws:7.0%}  {tails[0]:>17s}  {tails[1]:>6s}")  # fmt: skip
        best = scores(counts).ods_threshold
        print(f"{name}: best threshold over all {n} images {best:.2f} (oracle F "
              f"{pooled_f(counts, best):.3f})")  # fmt: skip


if __name__ == "__main__":
    main()
