"""Adapting on the queue's first labels, replayed offline: F on the images a project never
labelled, and what the promotion judge decides.

For each set and draw d: the base version orders the set as a project's queue does
(`kcenter` from P in the version's own features; draw 0 is the whole set, as a
walk-through labels it, each further draw a random 80 % of it: `threshold_refit`'s queue
draws) and the first k images are labelled. As the backend's retrain does, the newest
`held_out_count(k)` labels judge and the others train: the base version is adapted
(`TrainConfig.adapt()` plus the arm's overrides, training seed d) on P plus those labels,
with the base validation set giving the candidate's own threshold, then scored on every
image of the set. Recorded per case:
- `judge`, `parent_judge`: ODS of the candidate and of the base version on the held-out
  labels (`promoted`: the first is at least the second, i.e. margin 0);
- `ods`, `parent_ods`: pooled ODS on the images never labelled (the oracle threshold);
- `own`: the candidate's threshold on the validation set;
- `f`, `parent_f`: pooled F on the images never labelled at the threshold the backend then
  serves (the moved rule on all k labels, `training.threshold_choice`, with the candidate
  or the base); `f_unseen`: the candidate's, fitted only on the labels it did not train on
  (its own below 3 such labels);
- `served_f`: `f` when promoted, else `parent_f`.
The summary replays promotion margins on these rows (`PROMOTION_MARGIN` in
backend/retrain.py) and, from the counts, how often a one-image test refuses a candidate
that is better (or worse) on the images never labelled. The validation guard is not
replayed, and each label count is adapted from the base version (the backend's second
round starts from, and is judged against, whatever the first promoted). Differences are
paired by draw; intervals are 95 % t over draws (label sets and training seeds together;
the draws share their farthest images, so few distinct images judge), for this one base
model.

Each case's per-image counts (the candidate's on every image, exact; on the labels also with
a 2-px tolerance) are kept beside `--out` (`counts/*.npz`, with the base version's).

Resumable: each finished case is a row of `--out` (CSV); a restart skips them.

    .venv/bin/python benchmarks/adaptation_queue.py --registry REG --sets gaps384 cfd \\
        --arms shipped added0.5 --draws 4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from result_rows import append_row
from threshold_refit import QUEUE_SHARE, features, queue_draws

from selection.images import list_images
from training.campaign import read_runs
from training.campaign_report import t_interval
from training.data import find_samples, load
from training.evaluate import evaluate
from training.fit import TOLERANCE_PX, held_out_count, within_margin
from training.metrics import COUNT_FIELDS, Counts, image_counts, pooled_f, scores
from training.predict import predict_probs
from training.registry import Registry
from training.threshold_choice import choose_threshold, refit_refused
from training.train import TrainConfig, train

ARMS: dict[str, dict] = {  # name -> TrainConfig.adapt() overrides
    "shipped": {},
    "added0.5": {"added_fraction": 0.5},  # half of each batch from the labels
    "dec600": {"steps": 600},  # 10x the steps (a GPU's seconds; adapt()'s 3 minutes cut a CPU's)
    "full600": {"steps": 600, "freeze_encoder": False},  # ... and the encoder trained too
    # TrainConfig.thorough(): full600 with 15 minutes instead of 3 (the thorough pass)
    "thorough": {"steps": 600, "freeze_encoder": False, "max_minutes": 15.0},
}
COLUMNS = ("set", "draw", "labels", "arm", "judge", "parent_judge", "ods", "parent_ods",
           "own", "f", "f_unseen", "parent_f", "served_f", "promoted", "train_seconds",
           "steps")  # fmt: skip


def tolerant_counts(model: torch.nn.Module, encoder: str, items: list) -> Counts:
    """Counts with a 2-px tolerance, per image."""
    return Counts.stack(
        image_counts(predict_probs(model, i.image, encoder), i.mask, TOLERANCE_PX) for i in items
    )


def save_counts(path: Path, picked: np.ndarray | None = None, **counts: Counts) -> None:
    """The counts as `<name>_<field>` arrays, and the labelled images' indices in pick order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"{name}_{k}": getattr(c, k) for name, c in counts.items() for k in COUNT_FIELDS}
    np.savez_compressed(path, **arrays, **({} if picked is None else {"picked": picked}))


def served(counts: Counts, labelled: np.ndarray, rest: np.ndarray, own: float) -> float:
    """Pooled F on `rest` at the threshold the backend serves with these labels to fit it
    (the version's `own` where they cannot refit it)."""
    chosen, fitting = None, counts.subset(labelled)
    if refit_refused(len(labelled), bool((fitting.found + fitting.fn)[:, 0].any())) is None:
        chosen = choose_threshold(fitting, own).threshold
    return pooled_f(counts.subset(rest), chosen if chosen is not None else own)


def summary(rows: list[dict]) -> None:
    """Per set, labels and arm: means over draws, then each arm against the base version
    and against `shipped` (served F), paired by draw; promoted and served here are with
    the strict judge (margin 0: `margins` replays the others)."""
    cases: dict[tuple[str, int], dict[str, dict[str, dict]]] = {}
    for r in rows:
        cases.setdefault((r["set"], int(r["labels"])), {}).setdefault(r["arm"], {})[r["draw"]] = r
    print(f"\n{'set':8s} {'labels':>6s} {'arm':18s} {'draws':>5s} {'promoted':>8s} {'ods':>6s} "
          f"{'f':>6s} {'served':>6s}  {'served - base [95 % t]':26s} "
          f"{'served - shipped [95 % t]':26s} {'train s':>7s}")  # fmt: skip
    for (name, k), arms in sorted(cases.items()):
        for arm, by_draw in arms.items():
            got = list(by_draw.values())

            def col(key: str, rows: list[dict] = got) -> np.ndarray:
                return np.array([float(r[key]) for r in rows])

            gain = col("served_f") - col("parent_f")
            mean, low, high = t_interval(gain)
            vs = ""
            ref = arms.get("shipped", {})
            common = [d for d in by_draw if d in ref]
            if arm != "shipped" and len(common) > 1:
                diff = np.array(
                    [float(by_draw[d]["served_f"]) - float(ref[d]["served_f"]) for d in common]
                )
                m, lo, hi = t_interval(diff)
                vs = f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]"
            print(
                f"{name:8s} {k:6d} {arm:18s} {len(got):5d} {col('promoted').mean():8.0%} "
                f"{col('ods').mean():6.3f} {col('f').mean():6.3f} {col('served_f').mean():6.3f}"
                f"  {mean:+.3f} [{low:+.3f}, {high:+.3f}]{'':5s} {vs:26s} "
                f"{col('train_seconds').mean():7.0f}"
            )
        base = next(iter(arms.values()))
        parent = [float(r["parent_f"]) for r in base.values()]
        print(f"{name:8s} {k:6d} {'(base version)':18s} {len(parent):5d} {'':8s} "
              f"{np.mean([float(r['parent_ods']) for r in base.values()]):6.3f} "
              f"{np.mean(parent):6.3f}")  # fmt: skip
    margins(rows)


ALWAYS = float("inf")  # promote every candidate
MARGINS = (0.0, 0.025, 0.05, 0.1, 0.2, ALWAYS)  # 0: a strict judge


def margins(rows: list[dict]) -> None:
    """Promotion rules replayed from the rows: promote when the candidate's held-out ODS is
    at least the base's minus what a margin allows on the held-out images
    (`training.fit.within_margin`, as the backend); a promoted candidate's threshold fitted
    on all the labels (`all`, as the backend does) or only on those it did not train on
    (`unseen`, an alternative). Served F per rule, arm, set and label count, and its
    difference to margin 0 with `all` (paired by draw, 95 % t over draws)."""
    print(f"\n{'set':8s} {'labels':>6s} {'arm':10s} {'fit on':6s} {'margin':>6s} {'draws':>5s} "
          f"{'promoted':>8s} {'served':>6s}  {'- margin 0, all [95 % t]':26s}")  # fmt: skip
    cases: dict[tuple[str, int, str], list[dict]] = {}
    for r in rows:
        cases.setdefault((r["set"], int(r["labels"]), r["arm"]), []).append(r)
    for (name, k, arm), got in sorted(cases.items()):
        loss = np.array([float(r["parent_judge"]) - float(r["judge"]) for r in got])
        parent_f = np.array([float(r["parent_f"]) for r in got])
        before = np.where(loss <= 0, [float(r["f"]) for r in got], parent_f)
        for fit, column in (("all", "f"), ("unseen", "f_unseen")):
            f = np.array([float(r[column]) for r in got])
            for m in MARGINS:
                up = np.array([m == ALWAYS or within_margin(x, m, held_out_count(k)) for x in loss])
                served = np.where(up, f, parent_f)
                interval = (
                    ""
                    if len(got) < 2 or (m == 0 and fit == "all")
                    else "{:+.3f} [{:+.3f}, {:+.3f}]".format(*t_interval(served - before))
                )
                print(f"{name:8s} {k:6d} {arm:10s} {fit:6s} {m:6.3f} {len(got):5d} "
                      f"{up.mean():8.0%} {served.mean():6.3f}  {interval}")  # fmt: skip


def refused_share(gains: np.ndarray, margin: float) -> float:
    """The share of one-image tests, with these per-image ODS gains, that refuse."""
    return float(np.mean([not within_margin(-g, margin, 1) for g in gains]))


def one_image_tests(rows: list[dict], counts_dir: Path) -> None:
    """How often a one-image test refuses a candidate, for each margin: over the images a
    project never labelled, the share where the candidate's ODS on that image alone is
    lower than the base version's by more than the margin, for candidates whose pooled F
    there (at the threshold served) rose (`better`) or fell (`worse`)."""
    share: dict[tuple[str, str], list[np.ndarray]] = {}
    for r in rows:
        path = counts_dir / f"{r['set']}-d{r['draw']}-k{r['labels']}-{r['arm']}.npz"
        base_path = counts_dir / f"{r['set']}-base.npz"
        gain = float(r["f"]) - float(r["parent_f"])
        kind = "better" if gain > 0 else "worse" if gain < 0 else None
        if kind is None or not path.exists() or not base_path.exists():
            continue
        mine, theirs = np.load(path), np.load(base_path)
        rest = np.setdiff1d(np.arange(mine["exact_tp"].shape[0]), mine["picked"])
        per_image = [
            scores(Counts(*(z[f"exact_{k}"][[i]] for k in COUNT_FIELDS))).ods
            for i in rest
            for z in (mine, theirs)
        ]
        diff = np.array(per_image[0::2]) - np.array(per_image[1::2])
        share.setdefault((r["set"], kind), []).append(diff)
    if not share:
        print(f"\nno per-image counts in {counts_dir}: the one-image tests are not shown")
        return
    print(f"\n{'set':8s} {'candidate':9s} {'cases':>5s}  one image refuses it, by margin")
    for (name, kind), diffs in sorted(share.items()):
        refused = "  ".join(
            f"{m:.3f}: {np.mean([refused_share(d, m) for d in diffs]):4.0%}" for m in MARGINS[:-1]
        )
        print(f"{name:8s} {kind:9s} {len(diffs):5d}  {refused}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--registry", type=Path, help="the base version's registry (required)")
    p.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared/data")
    p.add_argument("--train", type=Path, help="P, with masks (DATA/deepcrack/train)")
    p.add_argument("--val", type=Path, help="the base validation set (DATA/deepcrack/val)")
    p.add_argument("--sets", nargs="+", default=["gaps384", "cfd"])
    p.add_argument("--labels", type=int, nargs="+", default=[7, 3])
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=["shipped"])
    p.add_argument("--draws", type=int, default=3, help="queue draws (draw 0: the whole set)")
    p.add_argument("--out", type=Path, default=Path("results/adaptation/queue.csv"))
    p.add_argument("--summarise-only", action="store_true", help="print the summary of --out")
    args = p.parse_args()
    if min(args.labels) < 2:
        p.error("--labels: at least 2 (with fewer nothing is held out to judge)")
    if args.summarise_only:
        summary(read_runs(args.out))
        one_image_tests(read_runs(args.out), args.out.parent / "counts")
        return
    if args.registry is None:
        p.error("--registry is required (unless --summarise-only)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["set"], r["draw"], r["labels"], r["arm"]) for r in read_runs(args.out)}
    registry = Registry(args.registry)
    version = registry.resolve("current")
    train_folder = args.train or args.data / "deepcrack/train"
    base_items = load(find_samples(train_folder))
    val_items = load(find_samples(args.val or args.data / "deepcrack/val"))
    loaded = registry.load(version)
    own = loaded.threshold
    primary = features(loaded, list_images(train_folder))
    for name in args.sets:
        items = load(find_samples(args.data / name))
        n = len(items)
        pool = features(loaded, [i.sample.image for i in items])
        parent = evaluate(loaded.model, loaded.encoder, items).counts
        parent_tolerant = tolerant_counts(loaded.model, loaded.encoder, items)
        counts_dir = args.out.parent / "counts"
        save_counts(counts_dir / f"{name}-base.npz", exact=parent, tolerant=parent_tolerant)
        budget = max(k for k in args.labels if k < int(QUEUE_SHARE * n))
        orders = list(queue_draws(primary, pool, budget, args.draws))
        for draw, order in enumerate(orders):
            for k in sorted(args.labels):
                if k > budget:
                    continue
                picked = np.asarray(order[:k])
                judge = picked[k - held_out_count(k) :]
                trained = picked[: k - held_out_count(k)]
                rest = np.setdiff1d(np.arange(n), picked)
                for arm in args.arms:
                    if (name, str(draw), str(k), arm) in done:
                        continue
                    candidate = registry.load(version)
                    config = TrainConfig.adapt(seed=draw, **ARMS[arm])
                    start = time.monotonic()
                    result = train(candidate.model, candidate.encoder, base_items, val_items,
                                   config, [items[i] for i in trained], progress=False)  # fmt: skip
                    seconds = time.monotonic() - start
                    counts = evaluate(candidate.model, candidate.encoder, items).counts
                    tolerant = tolerant_counts(
                        candidate.model, candidate.encoder, [items[i] for i in picked]
                    )
                    save_counts(
                        counts_dir / f"{name}-d{draw}-k{k}-{arm}.npz",
                        exact=counts,
                        tolerant=tolerant,
                        picked=picked,
                    )
                    judged = scores(counts.subset(judge)).ods
                    parent_judged = scores(parent.subset(judge)).ods
                    promoted = judged >= parent_judged
                    f = served(counts, picked, rest, result.threshold)
                    f_unseen = served(counts, judge, rest, result.threshold)
                    parent_f = served(parent, picked, rest, own)
                    row = dict(
                        set=name, draw=draw, labels=k, arm=arm, judge=f"{judged:.4f}",
                        parent_judge=f"{parent_judged:.4f}",
                        ods=f"{scores(counts.subset(rest)).ods:.4f}",
                        parent_ods=f"{scores(parent.subset(rest)).ods:.4f}", own=result.threshold,
                        f=f"{f:.4f}", f_unseen=f"{f_unseen:.4f}",
                        parent_f=f"{parent_f:.4f}", served_f=f"{f if promoted else parent_f:.4f}",
                        promoted=int(promoted), train_seconds=f"{seconds:.1f}",
                        steps=result.steps,
                    )  # fmt: skip
                    append_row(args.out, row, COLUMNS)
                    print(
                        f"{name} draw {draw} labels {k} {arm}: ODS {row['ods']} (base "
                        f"{row['parent_ods']}), F {row['f']} (base {row['parent_f']}), judge "
                        f"{row['judge']} vs {row['parent_judge']} ({seconds:.0f} s)",
                        flush=True,
                    )
    summary(read_runs(args.out))
    one_image_tests(read_runs(args.out), args.out.parent / "counts")


if __name__ == "__main__":
    main()
