"""`crackal simulate`: a simulated labelling campaign comparing selection strategies."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from selection.atomic import atomic_write
from selection.strategies import Strategy
from training.campaign import CampaignSpec, grouped_split, prepare, read_runs, run_campaign
from training.campaign_report import format_summary, write_summary
from training.data import find_samples, load
from training.fit import fit_version
from training.model_features import extractor_from_model
from training.registry import Registry
from training.train import TrainConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulated labelling campaign: learning curves of selection strategies",
        description="From base model M, label a pool (the --pool sets minus a test split "
        "grouped by original photo) round by round with each strategy, fine-tune from M "
        "for a fixed number of steps, evaluate on the shared test split. Resumable: "
        "finished (strategy, seed) runs in OUT/runs.csv are kept.",
    )
    p.add_argument("--registry", type=Path, metavar="DIR", help="base model M (required)")
    p.add_argument("--train", type=Path, metavar="DIR", help="P, with masks (required)")
    p.add_argument("--val", type=Path, metavar="DIR", help="validation of P (base model only)")
    p.add_argument(
        "--pool",
        action="append",
        type=Path,
        metavar="DIR",
        help="a set to label (repeatable, required); a set without masks/ is crack-free",
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    p.add_argument(
        "--strategies",
        nargs="+",
        choices=[s.value for s in Strategy],
        default=[s.value for s in Strategy],
    )
    p.add_argument("--seeds", type=int, default=10, help="paired seeds 0..N-1 (default 10)")
    p.add_argument("--budgets", type=int, nargs="+", default=[0, 4, 8, 16])
    p.add_argument("--steps", type=int, default=40, help="fine-tuning steps per round")
    p.add_argument("--test-per-set", type=int, default=30, help="test images per set")
    p.add_argument(
        "--crack-crops",
        type=_share,
        default=0.0,
        help="share of training crops placed over a crack pixel (default 0: as the "
        "committed campaign ran)",
    )
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument(
        "--base-steps",
        type=int,
        default=600,
        help="steps of the base model when the registry is empty",
    )
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:1 ...")
    p.add_argument(
        "--summarise-only",
        action="store_true",
        help="recompute summary.json and the figure from OUT/runs.csv (needs only --out)",
    )
    p.set_defaults(run=run, parser=p)


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1]: {text}")
    return value


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    if args.summarise_only:
        summary = write_summary(read_runs(out / "runs.csv"), out)
        print(format_summary(summary))
        print(f"summary.json and learning_curves.png written to {out}/")
        return 0
    missing = [f"--{k}" for k in ("registry", "train", "pool") if not getattr(args, k)]
    if missing:
        args.parser.error(f"{', '.join(missing)} required (all but --out: --summarise-only)")
    adaptation = {"steps": args.steps, "crack_crops": args.crack_crops}
    resumed = (out / "runs.csv").exists() and (out / "split.json").exists()
    before = json.loads((out / "split.json").read_text()) if resumed else {}
    if resumed:  # checked before any loading
        recorded = before.get("adaptation") or {}
        for key, value in recorded.items():  # absent: a folder from before it was recorded
            if adaptation.get(key) != value:
                flag = "--" + key.replace("_", "-")
                raise ValueError(
                    f"{out} holds runs with {flag} {value}: resume with it, or use a new --out"
                )
    registry = Registry(args.registry)
    train_items = load(find_samples(args.train), desc="load train")
    if registry.current() is None:
        val = load(find_samples(args.val), desc="load val") if args.val else []
        print(f"registry is empty: training the base model M ({args.base_steps} steps)")
        fit_version(
            registry,
            train_items,
            val,
            note="crackal simulate: base model M",
            config=TrainConfig.base(
                steps=args.base_steps,
                max_minutes=10**6,
                patience=10**6,
                skeleton_recall=0.0,  # the base loss of every committed campaign
            ),
        )
    base = registry.load("current")
    split, pool, tests = {}, [], {}
    for folder in args.pool:
        samples = find_samples(folder)
        test, rest = grouped_split(samples, args.test_per_set, args.split_seed)
        name = samples[0].set_name
        split[name] = sorted(s.image.name for s in test)
        tests[name] = load(test, desc=f"load {name} test")
        pool += load(rest, desc=f"load {name} pool")
    out.mkdir(parents=True, exist_ok=True)
    if resumed and before.get("test") != split:
        raise ValueError(f"{out} holds runs on another test split: use a new --out")
    with atomic_write(out / "split.json", "w") as fh:
        json.dump(
            {
                "base_version": base.version,
                "split_seed": args.split_seed,
                "adaptation": adaptation,
                "test": split,
            },
            fh,
            indent=1,
        )
    spec = CampaignSpec(
        args.strategies,
        range(args.seeds),
        args.budgets,
        args.steps,
        crack_crops=args.crack_crops,
        device=args.device,
    )
    campaign = prepare(base, extractor_from_model(base), train_items, pool, tests, spec)
    print(
        f"pool {len(pool)} images, test {sum(map(len, tests.values()))} images, "
        f"{len(spec.strategies)} strategies x {args.seeds} seeds x budgets {spec.budgets}"
    )
    rows = run_campaign(campaign, out)
    summary = write_summary(rows, out)
    print(format_summary(summary))
    print(f"results in {out}/")
    return 0
