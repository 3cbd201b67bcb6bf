"""Base-model training settings compared on DeepCrack validation: each setting trained from
ImageNet weights for each seed, validation ODS printed per setting (mean, min, max) with
the step of the best evaluation. Made to size the base model's schedule for the step count
a CPU reaches in the default budget (about 680 fp32 steps on a 2-core EPYC): a GPU runs a
setting in about 30 s.

    python benchmarks/base_training_sweep.py [--data ../shared/data] [--seeds 0 1]
        [--steps 680] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from training.data import find_samples, load
from training.device import resolve_device
from training.model import DEFAULT_ENCODER, build_model
from training.train import TrainConfig, train

# name -> TrainConfig overrides. Steps are scaled so every setting trains on as many pixels
# as --steps batches of 8 crops of 128 px: about the same CPU time.
# Rates are absolute: "previous" is what shipped before 2026-11-28 (the logs in
# results/device call it "shipped"); "lr-x2" is those rates doubled, without early stopping.
# Every arm but "shipped" trains on BCE + Dice, the loss of the logged runs (the base preset
# adds the skeleton recall term since session 15; "bce-dice" is the preset without it).
BCE_DICE = {"skeleton_recall": 0.0}
PREVIOUS = {"lr_decoder": 1e-3, "lr_encoder": 5e-4, **BCE_DICE}
SETTINGS: dict[str, dict[str, float]] = {
    "shipped": {},  # TrainConfig.base() as it is now
    "bce-dice": BCE_DICE,
    "previous": PREVIOUS,  # patience 4
    "no-stop": {**PREVIOUS, "patience": 99},
    "lr-x0.5": {"patience": 99, "lr_decoder": 5e-4, "lr_encoder": 2.5e-4, **BCE_DICE},
    "lr-x0.25": {"patience": 99, "lr_decoder": 2.5e-4, "lr_encoder": 1.25e-4, **BCE_DICE},
    "lr-x2": {"patience": 99, "lr_decoder": 2e-3, "lr_encoder": 1e-3, **BCE_DICE},
    "batch16": {**PREVIOUS, "patience": 99, "batch_size": 16},
    "crop192": {**PREVIOUS, "patience": 99, "crop": 192},
    "crop256-batch4": {**PREVIOUS, "patience": 99, "crop": 256, "batch_size": 4},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared/data")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=680)
    parser.add_argument("--device", default=None)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    device = resolve_device(args.device)
    items = load(find_samples(args.data / "deepcrack" / "train"), desc="load train")
    val = load(find_samples(args.data / "deepcrack" / "val"), desc="load val")
    print(f"{args.steps} steps, fp32, on {device}; seeds {args.seeds}")
    for name in args.settings:
        overrides = SETTINGS[name]
        pixels = overrides.get("batch_size", 8) * overrides.get("crop", 128) ** 2
        steps = round(args.steps * 8 * 128**2 / pixels)
        results = []
        for seed in args.seeds:
            config = TrainConfig.base(steps=steps, seed=seed, bf16=False, **overrides)
            r = train(
                build_model(DEFAULT_ENCODER),
                DEFAULT_ENCODER,
                items,
                val,
                config,
                progress=False,
                device=device,
            )
            best = max(r.history, key=lambda h: h["val_ods"])
            results.append(r.val_ods)
            curve = " ".join(f"{h['val_ods']:.3f}" for h in r.history)
            print(
                f"  {name} seed {seed}: best {r.val_ods:.4f} at step {best['step']:.0f} "
                f"(threshold {r.threshold:.2f}), {r.steps} steps, {r.seconds:.0f} s; "
                f"curve {curve}",
                flush=True,
            )
        print(
            f"{name}: mean {statistics.mean(results):.4f} [{min(results):.4f}, {max(results):.4f}]",
            flush=True,
        )


if __name__ == "__main__":
    main()
