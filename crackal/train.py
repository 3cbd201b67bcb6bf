"""`crackal train`: train a model (or fine-tune a version) and register it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.data import find_samples, load
from training.fit import Promotion, fit_version
from training.model import DEFAULT_ENCODER, ENCODERS
from training.registry import Registry
from training.train import TrainConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a crack model and register it as a new version")
    p.add_argument(
        "--train",
        required=True,
        action="append",
        type=Path,
        metavar="DIR",
        help="training set with images/ and masks/ (repeatable; no masks/ = crack-free images)",
    )
    p.add_argument(
        "--val",
        type=Path,
        metavar="DIR",
        help="validation set: early stopping and the version's ODS threshold",
    )
    p.add_argument("--registry", required=True, type=Path, metavar="DIR")
    p.add_argument(
        "--from",
        dest="parent",
        metavar="VERSION",
        help="fine-tune this version (current, latest, vN) instead of ImageNet",
    )
    p.add_argument("--encoder", default=DEFAULT_ENCODER, choices=sorted(ENCODERS))
    p.add_argument("--steps", type=int, help="training steps (default: 1200, or 60 with --from)")
    p.add_argument(
        "--max-minutes",
        type=float,
        help="wall-clock budget in minutes (default: 13, or 3 with --from)",
    )
    p.add_argument("--batch-size", type=int, help="crops per step (default: 8)")
    p.add_argument("--crop", type=int, help="crop side in pixels (default: 128)")
    p.add_argument(
        "--skeleton-recall",
        type=float,
        metavar="W",
        help="weight of the skeleton recall term for thin cracks (default: 1; 0 = BCE + Dice)",
    )
    p.add_argument(
        "--patience",
        type=int,
        metavar="N",
        help="validation evaluations without a better ODS before stopping (default: 4, or 3 "
        "with --from; a number above the run's evaluations runs to the steps or the budget)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--promote",
        type=_promotion,
        choices=list(Promotion),
        default=Promotion.ALWAYS,
        help="make the new version current (default: always)",
    )
    p.set_defaults(run=run)


def _promotion(value: str) -> Promotion:
    """An argparse type: a promotion policy, refused with the policies' names."""
    try:
        return Promotion.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def config_from_args(args: argparse.Namespace, adapting: bool) -> TrainConfig:
    overrides = {
        k: v
        for k, v in {
            "steps": args.steps,
            "max_minutes": args.max_minutes,
            "batch_size": args.batch_size,
            "crop": args.crop,
            "skeleton_recall": args.skeleton_recall,
            "patience": args.patience,
            "seed": args.seed,
        }.items()
        if v is not None
    }
    return TrainConfig.adapt(**overrides) if adapting else TrainConfig.base(**overrides)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args, adapting=args.parent is not None)  # refused before loading
    registry = Registry(args.registry)
    samples = [s for folder in args.train for s in find_samples(folder)]
    val_samples = find_samples(args.val) if args.val else []
    if args.parent:
        registry.resolve(args.parent)  # fail before loading images
    items = load(samples, desc="load train")
    val_items = load(val_samples, desc="load val")
    outcome = fit_version(
        registry,
        items,
        val_items,
        parent=args.parent,
        encoder=args.encoder,
        config=config,
        promote=args.promote,
        note="crackal train",
    )
    print(f"registered {outcome.version} ({outcome.reason}); current: {registry.current()}")
    print(json.dumps(outcome.meta["metrics"], indent=2))
    return 0
