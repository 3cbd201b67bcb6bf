"""`crackal adapt`: the paper's adaptation experiment (section 4.3) on real sets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.adaptation import PAPER_RETRAIN, STRATEGIES, run_experiment
from training.adaptation_report import write_report
from training.data import find_samples, load
from training.fit import fit_version
from training.model_features import model_extractor
from training.registry import Registry
from training.train import TrainConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "adapt",
        help="add q far images of each unseen set to P, fine-tune, compare",
        description="Base model M (the registry's current version; trained first if the "
        "registry is empty). Each secondary set is split once, by original photo, into a "
        "test part (shared by every model) and candidates; I_dist with M's features; q "
        "candidates per set from the scaled-distance band (or uniformly: --strategy "
        "random); M_q fine-tuned from M on P + the chosen images for a fixed number of "
        "steps; every model evaluated on the test parts. Writes figures 4-7 and tables 3-5 "
        "of the paper.",
    )
    p.add_argument("--registry", required=True, type=Path, metavar="DIR")
    p.add_argument("--train", required=True, type=Path, metavar="DIR", help="P (with masks)")
    p.add_argument("--val", required=True, type=Path, metavar="DIR", help="validation of P")
    p.add_argument(
        "--secondary",
        required=True,
        action="append",
        type=Path,
        metavar="DIR",
        help="an unseen labelled set S (repeatable)",
    )
    p.add_argument("--q", type=int, nargs="+", default=[1, 3, 7], help="images per set")
    p.add_argument("--strategy", nargs="+", choices=STRATEGIES, default=["band"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--base", default="current", help="base version (default: current)")
    p.add_argument("--steps", type=int, default=300, help="fine-tuning steps (default: 300)")
    p.add_argument("--test-per-set", type=int, default=30, help="test images per set (default: 30)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the test split")
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    registry = Registry(args.registry)
    secondaries = {folder.name: find_samples(folder) for folder in args.secondary}
    train_items = load(find_samples(args.train), desc="load train")
    val_items = load(find_samples(args.val), desc="load val")
    if registry.current() is None and args.base == "current":
        print("registry is empty: training the base model M first")
        fit_version(registry, train_items, val_items, note="crackal adapt: base model M")
    base = registry.resolve(args.base)
    # a fixed number of steps: no wall-clock budget, no early stop (eval only at the end)
    overrides = {"steps": args.steps, "max_minutes": 10**6, "eval_every": 10**9, **PAPER_RETRAIN}
    experiment = run_experiment(
        registry,
        base,
        model_extractor(registry, base),
        train_items,
        val_items,
        {name: load(samples, desc=f"load {name}") for name, samples in secondaries.items()},
        qs=args.q,
        strategies=args.strategy,
        seeds=args.seeds,
        config_for_seed=lambda seed: TrainConfig.adapt(seed=seed, **overrides),
        test_per_set=args.test_per_set,
        split_seed=args.split_seed,
    )
    summary = write_report(experiment, args.out)
    print(json.dumps(summary["mean_ods_over_sets"], indent=2))
    print(f"report written to {args.out}/")
    return 0
