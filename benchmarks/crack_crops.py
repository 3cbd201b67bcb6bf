"""Do training crops placed on a crack help adaptation? Paired comparison of two campaign runs
on the same test split: `results/selection` (the committed campaign, crops anywhere) and a
run of `crackal simulate --strategies farthest --crack-crops 0.5` into another folder.

Prints, per set, the mean ODS per budget of `farthest` with and without crack crops on the
seeds both runs finished, and the paired AULC difference (95% t-interval, paired t-test p,
Holm over the rows; training/campaign_report.py).

    .venv/bin/python benchmarks/crack_crops.py [--plain results/selection] \\
        [--on-crack results/crack-crops]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from training.campaign import read_runs
from training.campaign_report import holm, summarise

REPO = Path(__file__).resolve().parents[1]
ON_CRACK = "farthest-on-crack"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plain", type=Path, default=REPO / "results" / "selection")
    parser.add_argument("--on-crack", type=Path, default=REPO / "results" / "crack-crops")
    args = parser.parse_args()
    for folder in (args.plain, args.on_crack):
        split = json.loads((folder / "split.json").read_text())["test"]
        if folder == args.plain:
            first = split
        elif split != first:
            raise SystemExit("the two runs have different test splits: not paired")
    on_crack = read_runs(args.on_crack / "runs.csv")
    per_seed = Counter(int(r["seed"]) for r in on_crack)
    seeds = {s for s, n in per_seed.items() if n == max(per_seed.values())}
    rows = [
        r
        for r in read_runs(args.plain / "runs.csv")
        if int(r["seed"]) in seeds and r["strategy"] in ("farthest", "random")
    ]
    rows += [{**r, "strategy": ON_CRACK} for r in on_crack if int(r["seed"]) in seeds]
    summary = summarise(rows)
    print(f"paired seeds: {summary['seeds']}")
    curves = summary["learning_curves"]
    mean = {(c["strategy"], c["set"], c["budget"]): c["mean_ods"] for c in curves}
    pairs = summary["aulc_pairs"]
    for d, p_holm in zip(pairs, holm([d["p"] for d in pairs]), strict=True):
        name = d["set"]
        curve = "  ".join(
            f"{b}: {mean[('farthest', name, b)]:.3f} -> {mean[(ON_CRACK, name, b)]:.3f}"
            for b in summary["budgets"]
        )
        sign = 1.0 if d["a"] == ON_CRACK else -1.0  # pairs are a - b in name order
        diff, ends = sign * d["mean_diff"], sorted(sign * x for x in d["ci95"])
        print(
            f"{name:<9s} mean ODS without -> with crack crops  {curve}\n"
            f"{'':<9s} AULC with - without: {diff:+.4f} [{ends[0]:+.4f}, {ends[1]:+.4f}] "
            f"p={d['p']:.3f} (Holm over these rows {p_holm:.3f})"
        )


if __name__ == "__main__":
    main()
