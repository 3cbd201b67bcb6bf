"""The training loop: random crops, BCE + Dice + skeleton recall (both presets; weight 0
drops it), AdamW, warm-up then cosine, early stop on validation ODS. Used both for a base
model and for adapting one to newly labelled images.

CPU-sized defaults (2 cores): 128 x 128 crops, batch 8. Runs on CUDA when present; bf16
autocast only where the hardware has native bf16 (`training.device`); evaluation in float32.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from training.data import Loaded, batch_tensors, random_crop
from training.device import resolve_device, use_bf16
from training.evaluate import Evaluation, evaluate
from training.losses import bce_dice_loss, skeleton_recall_loss, tubed_skeletons
from training.model import normalize


@dataclass
class TrainConfig:
    """Settings of one training run. `base()` and `adapt()` give the two usual presets."""

    steps: int = 1200
    batch_size: int = 8
    crop: int = 128
    # twice the rates of sessions 1-11: +0.010 [+0.005, +0.014] validation ODS over 5 paired
    # seeds at 680 steps (benchmarks/base_training_sweep.py; halving them lost 0.010)
    lr_decoder: float = 2e-3
    lr_encoder: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    eval_every: int = 100
    patience: int = 4  # evaluations without a better validation ODS before stopping
    max_minutes: float = 13.0  # wall-clock budget for the whole run, evaluations included
    seed: int = 0
    bf16: bool | None = None  # None: native bf16 decides (training.device.use_bf16)
    added_fraction: float = 0.25  # share of each batch drawn from added (new) images
    crack_crops: float = 0.0  # share of crops placed over a crack pixel (images with one)
    # train the decoder and head only: the encoder's weights and BatchNorm statistics stay
    # as they were, so the version's features (the encoder's) are its parent's
    freeze_encoder: bool = False
    # weight of the skeleton recall term (training.losses): 0 trains on BCE + Dice alone;
    # both presets use 1
    skeleton_recall: float = 0.0

    def __post_init__(self) -> None:
        """Refuse settings no run can use, naming them (before any image is loaded)."""
        problems = [
            f"{name} must be {rule}, got {value!r}"
            for name, value, ok, rule in (
                ("steps", self.steps, self.steps >= 1, "at least 1"),
                ("batch_size", self.batch_size, self.batch_size >= 1, "at least 1"),
                ("crop", self.crop, self.crop >= 32 and self.crop % 32 == 0, "a multiple of 32"),
                ("eval_every", self.eval_every, self.eval_every >= 1, "at least 1"),
                ("patience", self.patience, self.patience >= 1, "at least 1"),
                ("max_minutes", self.max_minutes, self.max_minutes > 0, "positive"),
                ("lr_decoder", self.lr_decoder, self.lr_decoder > 0, "positive"),
                ("lr_encoder", self.lr_encoder, self.lr_encoder > 0, "positive"),
                ("crack_crops", self.crack_crops, 0 <= self.crack_crops <= 1, "within [0, 1]"),
                (
                    "skeleton_recall",
                    self.skeleton_recall,
                    0 <= self.skeleton_recall <= 10,
                    "within [0, 10]",
                ),
                (
                    "added_fraction",
                    self.added_fraction,
                    0 < self.added_fraction <= 1,
                    "within (0, 1]",
                ),
            )
            if not ok  # NaN fails every comparison, so it is refused too
        ]
        if problems:
            raise ValueError("training settings: " + "; ".join(problems))

    @classmethod
    def base(cls, **overrides: Any) -> TrainConfig:
        """Training from ImageNet weights, with the skeleton recall term, within a 13-minute
        wall-clock budget (`max_minutes`, evaluations included). The term, against BCE +
        Dice alone (session 15, seed 0, same budget, `results/base/`): DeepCrack validation
        ODS 0.761 -> 0.787, and ODS up on every held-out set (CFD 0.563 -> 0.622, GAPs384
        0.197 -> 0.263, large/ 0.274 -> 0.377, Crack500 0.464 -> 0.488)."""
        return cls(**{"skeleton_recall": 1.0, **overrides})

    @classmethod
    def adapt(cls, **overrides: Any) -> TrainConfig:
        """Fine-tuning an existing version on P plus new images: 60 steps of the decoder
        and head (the encoder frozen; about 50 s on 2 CPU cores) with the skeleton recall
        term, evaluated once at the end; the candidate is judged on the project afterwards.
        Measured over paired seeds (`benchmarks/adaptation_encoder.py`, `results/adaptation/`):
        against sessions 1-12's every layer at 0.3x these rates, F on new CFD and GAPs384
        images after 3 and 7 labels not measurably lower (higher on CFD after 3), in two
        thirds of the training time, and the version keeps its parent's features; the
        skeleton recall term raised CFD's F after 3 and 7 labels.
        `freeze_encoder=False` trains the encoder too (at 5e-4)."""
        steps = overrides.get("steps", 60)
        defaults = dict(
            steps=steps,
            lr_decoder=1e-3,
            lr_encoder=5e-4,
            freeze_encoder=True,
            skeleton_recall=1.0,
            warmup_steps=10,
            eval_every=steps,
            patience=3,
            max_minutes=3.0,
        )
        return cls(**{**defaults, **overrides})

    @classmethod
    def thorough(cls, **overrides: Any) -> TrainConfig:
        """Adapting every layer for ten times the quick preset's steps (600, or until
        `max_minutes`, 15 by default: the cosine then anneals by the clock). Against
        `adapt()`, on the never-labelled images of a project after its queue's first 7
        labels (`benchmarks/adaptation_queue.py`, arm `full600`, 4 paired draws, one H200):
        pooled F +0.037 [+0.021, +0.053] on CFD, +0.109 [+0.078, +0.141] on GAPs384. About
        30 s on an H200, 9.5 minutes on 2 CPU cores (0.95 s a step)."""
        defaults = {"steps": 600, "freeze_encoder": False, "max_minutes": 15.0}
        return cls.adapt(**{**defaults, **overrides})


class TrainingStoppedError(Exception):
    """A run given up before its end because its `stop` callback said so."""


class Adaptation(StrEnum):
    """Which preset a project's retrain uses: `quick` (`TrainConfig.adapt`) or `thorough`
    (`TrainConfig.thorough`)."""

    QUICK = "quick"
    THOROUGH = "thorough"

    def config(self, **overrides: Any) -> TrainConfig:
        """The preset's training settings, with `overrides`."""
        preset = TrainConfig.thorough if self is Adaptation.THOROUGH else TrainConfig.adapt
        return preset(**overrides)


class StopReason(StrEnum):
    """Why a training run ended: its last step, its patience or its wall-clock budget."""

    STEPS = "steps"
    PATIENCE = "patience"
    TIME = "time"


@dataclass
class TrainResult:
    """The best weights found (by validation ODS, or the last ones without validation)."""

    state_dict: dict[str, torch.Tensor]
    val_ods: float | None
    threshold: float  # the ODS threshold on validation (0.5 without validation)
    steps: int
    seconds: float
    stopped: StopReason
    history: list[dict[str, float]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    evaluation: Evaluation | None = None  # the best weights' validation scores


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(step: int, config: TrainConfig, time_used: float = 0.0) -> float:
    """Linear warm-up, then a cosine from 1 to 0.05 over whichever budget ends first: the
    steps or the wall clock (`time_used`: the share of `max_minutes` spent). On a slow CPU
    the time budget ends a run long before its steps; a schedule sized by steps alone never
    anneals there (seen: 680 of 1200 steps in 13 minutes, validation ODS wandering)."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, max((step - config.warmup_steps) / span, time_used))
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))


def _train_mode(model: nn.Module, config: TrainConfig) -> None:
    """Training mode, except a frozen encoder: its BatchNorm layers keep their statistics."""
    model.train()
    if config.freeze_encoder:
        model.encoder.eval()


def train(
    model: nn.Module,
    encoder: str,
    train_items: Sequence[Loaded],
    val_items: Sequence[Loaded] = (),
    config: TrainConfig | None = None,
    added_items: Sequence[Loaded] = (),
    on_checkpoint: Callable[[dict[str, torch.Tensor], Evaluation], None] | None = None,
    progress: bool = True,
    device: torch.device | str | None = None,
    tolerance: float = 0.0,
    stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train `model` in place and return its best state.

    `stop`, asked about once a second between steps, gives the run up when it returns True
    (`TrainingStoppedError`; the model's weights are then partly trained).

    Validation scores count exact pixels and, with a `tolerance` > 0, also pixels within
    that distance (`Evaluation.tolerant`); the best weights' scores come back with them.

    `added_items` (new labels, when adapting) are mixed into every batch at
    `config.added_fraction`; the rest of each batch comes from `train_items`.
    """
    config = config or TrainConfig()
    frozen = list(model.encoder.parameters()) if config.freeze_encoder else []
    trainable = [p.requires_grad for p in frozen]
    for p in frozen:
        p.requires_grad_(False)
    try:
        return _train(
            model, encoder, train_items, val_items, config, added_items, on_checkpoint,
            progress, device, tolerance, stop,
        )  # fmt: skip
    finally:  # the caller's flags again, also after an error
        for p, flag in zip(frozen, trainable, strict=True):
            p.requires_grad_(flag)


def _train(
    model: nn.Module,
    encoder: str,
    train_items: Sequence[Loaded],
    val_items: Sequence[Loaded],
    config: TrainConfig,
    added_items: Sequence[Loaded],
    on_checkpoint: Callable[[dict[str, torch.Tensor], Evaluation], None] | None,
    progress: bool,
    device: torch.device | str | None,
    tolerance: float,
    stop: Callable[[], bool] | None = None,
) -> TrainResult:
    if not train_items and not added_items:
        raise ValueError("no training images")
    device = resolve_device(device if device is None else str(device))
    bf16 = use_bf16(device) if config.bf16 is None else config.bf16
    model.to(device)
    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    encoder_params = list(model.encoder.parameters())
    encoder_ids = {id(p) for p in encoder_params}
    other_params = [p for p in model.parameters() if id(p) not in encoder_ids]
    groups = [{"params": other_params, "lr": config.lr_decoder}]
    if not config.freeze_encoder:  # else `train` turned its gradients off
        groups.append({"params": encoder_params, "lr": config.lr_encoder})
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    n_added = 0
    if added_items:
        share = 1.0 if not train_items else config.added_fraction
        n_added = max(1, round(config.batch_size * share))
    n_base = config.batch_size - n_added

    best_state, best_ods, best_threshold, best_eval = None, -1.0, 0.5, None
    history: list[dict[str, float]] = []
    evals_without_gain, stopped, step = 0, StopReason.STEPS, 0
    start = time.monotonic()
    budget = config.max_minutes * 60  # positive: TrainConfig checks it
    deadline = start + budget
    bar = tqdm(total=config.steps, desc="train", unit="step", disable=not progress)
    running = 0.0
    _train_mode(model, config)
    asked = start - 1.0  # asked before the first step too
    for step in range(1, config.steps + 1):
        if stop is not None and time.monotonic() - asked >= 1.0:
            asked = time.monotonic()
            if stop():
                bar.close()
                raise TrainingStoppedError(f"stopped at step {step} of {config.steps}")
        factor = lr_factor(step - 1, config, (time.monotonic() - start) / budget)
        for group, base_lr in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base_lr * factor
        picks = [train_items[i] for i in rng.integers(0, len(train_items) or 1, n_base)]
        picks += [added_items[i] for i in rng.integers(0, len(added_items) or 1, n_added)]
        on_crack = [config.crack_crops > 0 and rng.random() < config.crack_crops for _ in picks]
        crops = [
            random_crop(it, config.crop, rng, on_crack=on)
            for it, on in zip(picks, on_crack, strict=True)
        ]
        images, masks = batch_tensors(crops)
        skeletons = tubed_skeletons(masks).to(device) if config.skeleton_recall else None
        images, masks = images.to(device), masks.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(normalize(images, encoder))
        loss = bce_dice_loss(logits, masks)
        if skeletons is not None:
            loss = loss + config.skeleton_recall * skeleton_recall_loss(logits, skeletons)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = loss.item()
        running = 0.9 * running + 0.1 * value if step > 1 else value
        bar.update()
        bar.set_postfix(loss=f"{running:.3f}", best_ods=f"{max(best_ods, 0):.3f}")

        out_of_time = time.monotonic() >= deadline
        if val_items and (step % config.eval_every == 0 or step == config.steps or out_of_time):
            ev = evaluate(model, encoder, val_items, tolerance=tolerance)
            _train_mode(model, config)
            history.append(
                {
                    "step": step,
                    "loss": running,
                    "val_ods": ev.scores.ods,
                    "threshold": ev.scores.ods_threshold,
                    "seconds": time.monotonic() - start,
                }
            )
            if ev.scores.ods > best_ods:
                best_ods, best_threshold, best_eval = ev.scores.ods, ev.scores.ods_threshold, ev
                best_state = copy.deepcopy(model.state_dict())
                evals_without_gain = 0
                if on_checkpoint:
                    on_checkpoint(best_state, ev)
            else:
                evals_without_gain += 1
                if evals_without_gain >= config.patience:
                    stopped = StopReason.PATIENCE
                    break
        if out_of_time:
            stopped = StopReason.TIME
            break
    bar.close()
    if best_state is None:
        best_state = copy.deepcopy(model.state_dict())
    best_state = {k: v.cpu() for k, v in best_state.items()}
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        state_dict=best_state,
        val_ods=best_ods if val_items else None,
        threshold=best_threshold,
        steps=step,
        seconds=time.monotonic() - start,
        stopped=stopped,
        history=history,
        config={**asdict(config), "bf16": bf16, "device": str(device)},
        evaluation=best_eval,
    )
