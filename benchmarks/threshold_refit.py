"""A project's threshold from its first labels: the version's own, the labels' pooled ODS
threshold (`refit`, sessions 10-13), that refit only when it wins leave-one-out (`guarded`,
session 14: the rule with a prior of 0), or the refit moved `labels / (labels + P)` of the
way from the version's own in log-odds when that wins leave-one-out (`moved-P`; P = 7
ships: training.threshold_choice).

For each set: the version's per-image counts on every image (computed once), then label
sets of each size drawn two ways:
- `random`: `--draws` uniform draws (every set, once each, where there are fewer);
- `queue`: the order a project's queue serves (`kcenter` from the version's training set
  P, in the version's own features, as the backend orders it): draw 0 is the whole set's
  first picks; each further draw is the first picks of a random 80 % of the set, i.e. of a
  project that holds most of these images (a walk-through labels draw 0). Queue draws
  repeat the farthest images, so many are the same label set.
Each policy's threshold is applied to the images not drawn and their pooled F is
recorded. Repeated label sets count once (`sets`): differences to the version's own are
paired by label set, and the 95 % t interval is over the distinct sets, i.e. over which
images a project happened to label, for this one model (not over models or training
seeds). "worst 5 %" is the 5th percentile of that difference over the sets (the projects
a policy hurts most). No correction for the many comparisons: read the intervals as
descriptive.

    .venv/bin/python benchmarks/threshold_refit.py --registry REG [--sets cfd gaps384 large]
        [--priors 3 7 10]
"""

from __future__ import annotations

import argparse
import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from selection.cache import FeatureCache, default_cache_dir
from selection.embed import embed_paths
from selection.images import list_images
from selection.strategies import RoundState, Strategy, choose
from training.campaign_report import t_interval
from training.data import find_samples, load
from training.evaluate import evaluate
from training.metrics import Counts, pooled_f, scores
from training.model_features import extractor_from_model
from training.registry import LoadedModel, Registry
from training.threshold_choice import PRIOR_LABELS, choose_threshold

DRAWS = ("random", "queue")
QUEUE_SHARE = 0.8  # of the set a further queue draw's project holds


def random_draws(n: int, k: int, draws: int, seed: int = 0) -> Iterator[np.ndarray]:
    if math.comb(n, k) <= draws:
        yield from (np.array(c) for c in itertools.combinations(range(n), k))
        return
    rng = np.random.default_rng(seed)
    for _ in range(draws):
        yield rng.choice(n, k, replace=False)


def distinct(drawn_sets: list[np.ndarray]) -> list[np.ndarray]:
    seen = {tuple(sorted(int(i) for i in d)) for d in drawn_sets}
    return [np.array(s) for s in sorted(seen)]


def queue_draws(
    primary: np.ndarray, pool: np.ndarray, k: int, draws: int, seed: int = 0
) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    for d in range(draws):
        held = np.arange(len(pool)) if d == 0 else np.sort(
            rng.choice(len(pool), int(QUEUE_SHARE * len(pool)), replace=False)
        )  # fmt: skip
        state = RoundState(primary=primary, pool=pool[held], rng=rng)
        yield held[choose(Strategy.KCENTER, state, k)]


def thresholds(labelled: Counts, own: float, priors: dict[str, float]) -> dict[str, float | None]:
    """Each policy's threshold for these labels; None: the version's own serves."""
    refit = scores(labelled).ods_threshold  # 0 was never served
    chosen: dict[str, float | None] = {"version": None, "refit": refit if refit > 0 else None}
    for policy, prior in priors.items():
        chosen[policy] = choose_threshold(labelled, own, prior).threshold
    return chosen


def features(loaded: LoadedModel, paths: list[Path]) -> np.ndarray:
    extractor = extractor_from_model(loaded)
    cache = FeatureCache(default_cache_dir(), extractor.version)
    embedded = embed_paths(paths, extractor, cache)
    if embedded.skipped:
        raise SystemExit(f"unreadable images: {embedded.skipped}")
    return embedded.features


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--registry", type=Path, required=True)
    p.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared/data")
    p.add_argument("--primary", type=Path, help="its training images (DATA/deepcrack/train)")
    p.add_argument("--sets", nargs="+", default=["cfd", "gaps384", "large"])
    p.add_argument("--labels", type=int, nargs="+", default=[3, 7])
    p.add_argument("--draw", nargs="+", choices=DRAWS, default=list(DRAWS))
    p.add_argument("--draws", type=int, default=300, help="random draws per size")
    p.add_argument("--queue-draws", type=int, default=50, help="queue draws per size")
    p.add_argument("--priors", type=float, nargs="+", default=[PRIOR_LABELS],
                   help=f"P of each moved rule to compare (shipped: {PRIOR_LABELS})")  # fmt: skip
    args = p.parse_args()
    loaded = Registry(args.registry).load("current")
    print(f"version {loaded.version}, its own threshold {loaded.threshold}")
    primary = None
    if "queue" in args.draw:
        primary = features(loaded, list_images(args.primary or args.data / "deepcrack/train"))
    print(f"the shipped rule: P = {PRIOR_LABELS}")
    print(f"\n{'set':8s} {'draw':6s} {'labels':>6s} {'draws':>5s} {'sets':>5s}  {'policy':9s} "
          f"{'F':>6s}  {'- version [95 % t]':26s} {'worst 5 %':>9s} {'adopted':>7s}")  # fmt: skip
    priors = {"guarded": 0.0, **{f"moved-{p:g}": p for p in args.priors}}
    own = loaded.threshold
    for name in args.sets:
        samples = find_samples(args.data / name)
        counts = evaluate(loaded.model, loaded.encoder, load(samples)).counts
        n = counts.tp.shape[0]
        pool = features(loaded, [s.image for s in samples]) if primary is not None else None
        for draw in args.draw:
            for k in args.labels:
                if k >= (n if draw == "random" else int(QUEUE_SHARE * n)):
                    continue
                if draw == "random":
                    drawn_sets = list(random_draws(n, k, args.draws))
                else:
                    drawn_sets = list(queue_draws(primary, pool, k, args.queue_draws))
                label_sets = distinct(drawn_sets)
                f: dict[str, list[float]] = {}
                adopted = dict.fromkeys(priors, 0)
                for drawn in label_sets:
                    others = counts.subset(np.setdiff1d(np.arange(n), drawn))
                    for policy, threshold in thresholds(counts.subset(drawn), own, priors).items():
                        f.setdefault(policy, []).append(pooled_f(others, threshold or own))
                        adopted[policy] = adopted.get(policy, 0) + (threshold is not None)
                m = len(label_sets)
                head = f"{name:8s} {draw:6s} {k:6d} {len(drawn_sets):5d} {m:5d}"
                print(f"{head}  {'version':9s} {np.mean(f['version']):6.3f}")
                for policy in [p for p in f if p != "version"]:
                    gain = np.array(f[policy]) - np.array(f["version"])
                    mean, low, high = t_interval(gain)
                    share = f"{adopted[policy] / m:7.0%}" if policy in priors else ""
                    print(f"{head}  {policy:9s} {np.mean(f[policy]):6.3f}  {mean:+.3f} "
                          f"[{low:+.3f}, {high:+.3f}]        {np.percentile(gain, 5):+9.3f} "
                          f"{share}", flush=True)  # fmt: skip
        best = scores(counts).ods_threshold
        print(f"{name}: best threshold over all {n} images {best:.2f} (oracle F "
              f"{pooled_f(counts, best):.3f})")  # fmt: skip


if __name__ == "__main__":
    main()
