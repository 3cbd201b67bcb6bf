"""A project's threshold from its first labels: the version's own, the labels' pooled ODS
threshold (`refit`, sessions 10-13), that refit only when it wins leave-one-out (`guarded`,
session 14), or the refit moved part of the way from the version's own, when that wins
leave-one-out (`shipped`: training.threshold_choice).

For each set: the version's per-image counts on every image (computed once), then label
sets of each size drawn two ways:
- `random`: `--draws` uniform draws;
- `queue`: the order a project's queue serves (`kcenter` from the version's training set
  P, in the version's own features, as the backend orders it): draw 0 is the whole set's
  first picks; each further draw is the first picks of a random 80 % of the set, i.e. of a
  project that holds most of these images (a walk-through labels draw 0).
Each policy's threshold is applied to the images not drawn and their pooled F is recorded.
Differences are paired by draw; the 95 % t interval is over the draws, i.e. over which
images a project happened to label, for this one model (not over models). Draws repeat
or overlap where a set is small (`large/`'s 6 photos; queue draws share their farthest
images), so the interval is too narrow there. "worst 5 %" is the 5th percentile of a
policy's difference to the version's own threshold over the draws (the projects it hurts
most).

    .venv/bin/python benchmarks/threshold_refit.py --registry REG [--sets cfd gaps384 large]
"""

from __future__ import annotations

import argparse
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
from training.metrics import COUNT_FIELDS, Counts, prf, scores, threshold_index
from training.model_features import extractor_from_model
from training.registry import LoadedModel, Registry
from training.threshold_choice import PRIOR_LABELS, choose_threshold

POLICIES = ("version", "refit", "guarded", "shipped")
COMPARED = POLICIES[1:]  # each against the version's own
DRAWS = ("random", "queue")
QUEUE_SHARE = 0.8  # of the set a further queue draw's project holds


def pooled_f(counts: Counts, threshold: float) -> float:
    i = threshold_index(threshold)
    return float(prf(*(getattr(counts, k)[:, i].sum() for k in COUNT_FIELDS))[2])


def random_draws(n: int, k: int, draws: int, seed: int = 0) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    for _ in range(draws):
        yield rng.choice(n, k, replace=False)


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
    args = p.parse_args()
    loaded = Registry(args.registry).load("current")
    print(f"version {loaded.version}, its own threshold {loaded.threshold}")
    primary = None
    if "queue" in args.draw:
        primary = features(loaded, list_images(args.primary or args.data / "deepcrack/train"))
    print(f"the shipped rule counts the version's own threshold as {PRIOR_LABELS} labels")
    print(f"\n{'set':8s} {'draw':6s} {'labels':>6s} {'draws':>5s}  "
          + "  ".join(f"{x:>8s}" for x in POLICIES)
          + "".join(f"  {x + ' - version':24s}" for x in COMPARED)
          + "  adopted: guarded shipped  worst 5 %: " + " ".join(COMPARED))  # fmt: skip
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
                f = {policy: [] for policy in POLICIES}
                adopted = {"guarded": 0, "shipped": 0}
                for drawn in drawn_sets:
                    rest = np.setdiff1d(np.arange(n), drawn)
                    labelled, others = counts.subset(drawn), counts.subset(rest)
                    refit = scores(labelled).ods_threshold  # 0 was never served
                    chosen = {
                        "version": None,
                        "refit": refit if refit > 0 else None,
                        "guarded": choose_threshold(labelled, loaded.threshold, 0).threshold,
                        "shipped": choose_threshold(labelled, loaded.threshold).threshold,
                    }
                    for policy, threshold in chosen.items():
                        f[policy].append(pooled_f(others, threshold or loaded.threshold))
                    for policy in adopted:
                        adopted[policy] += chosen[policy] is not None
                means = "  ".join(f"{np.mean(f[x]):8.3f}" for x in POLICIES)
                diffs, tails = [], []
                for policy in COMPARED:
                    gain = np.array(f[policy]) - np.array(f["version"])
                    mean, low, high = t_interval(gain)
                    diffs.append(f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]   ")
                    tails.append(f"{np.percentile(gain, 5):+.3f}")
                m = len(drawn_sets)
                shares = "  ".join(f"{adopted[x] / m:7.0%}" for x in adopted)
                print(f"{name:8s} {draw:6s} {k:6d} {m:5d}  {means}  {'  '.join(diffs)}  "
                      f"{shares}            {' '.join(tails)}", flush=True)  # fmt: skip
        best = scores(counts).ods_threshold
        print(f"{name}: best threshold over all {n} images {best:.2f} (oracle F "
              f"{pooled_f(counts, best):.3f})")  # fmt: skip


if __name__ == "__main__":
    main()
