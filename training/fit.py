"""Train (or adapt) a model, evaluate it, and register it as a new version: one call, used
by `crackal train`, `crackal adapt` and the backend's retraining job."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from training.data import Loaded
from training.device import resolve_device
from training.evaluate import EVALUATION_VERSION, evaluate
from training.metrics import Counts
from training.model import DEFAULT_ENCODER, build_model, encoder_sha256
from training.registry import Registry
from training.train import TrainConfig, TrainResult, train

TOLERANCE_PX = 2.0  # DeepCrack's tolerance, reported beside the exact scores


class Promotion(StrEnum):
    """When a newly trained version becomes current: always, only when it passes the
    judge (`if-better`), or never (registered only)."""

    ALWAYS = "always"
    IF_BETTER = "if-better"
    NEVER = "never"

    @classmethod
    def parse(cls, value: str, name: str = "promote") -> Promotion:
        """`value` as a policy; anything else is refused by `name`."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"{name} must be always, if-better or never, got {value!r}") from None


@dataclass
class FitOutcome:
    version: str
    promoted: bool
    reason: str  # why it was or was not made current
    result: TrainResult
    meta: dict[str, Any]
    # per-image counts measured on the way, version -> image path -> counts: the new
    # version's on `also_evaluate` and `judge`, the parent's on `judge` (when it judged)
    counts: dict[str, dict[Path, Counts]] = field(default_factory=dict)


def _image_record(item: Loaded) -> dict[str, str]:
    return {
        "set": item.sample.set_name,
        "image": item.sample.image.name,
        "sha256": item.sha256,
    }


def validation_key(items: Sequence[Loaded], device: str) -> str | None:
    """What a validation ODS was measured on: the images' and masks' pixels, the scoring
    code's version and the device type (None without a validation set)."""
    if not items:
        return None
    digest = hashlib.sha256(f"evaluation v{EVALUATION_VERSION} on {device}\n".encode())
    for item in items:
        digest.update(f"{item.image.shape}\n".encode())
        digest.update(np.ascontiguousarray(item.image).tobytes())
        digest.update(np.packbits(item.mask).tobytes())
    return digest.hexdigest()


def _stored_val_ods(meta: dict[str, Any], key: str | None) -> float | None:
    """A version's validation ODS as registered, when it was measured on this very set,
    with this scoring code on this kind of device (else None: measure it again)."""
    training, metrics = meta.get("training"), meta.get("metrics")
    if key is None or not isinstance(training, dict) or not isinstance(metrics, dict):
        return None
    val = metrics.get("val")
    ods = val.get("ods") if isinstance(val, dict) else None
    if training.get("validation_key") != key or isinstance(ods, bool):
        return None
    return float(ods) if isinstance(ods, int | float) and 0.0 <= ods <= 1.0 else None


def fit_version(
    registry: Registry,
    train_items: Sequence[Loaded],
    val_items: Sequence[Loaded] = (),
    *,
    parent: str | None = None,
    encoder: str = DEFAULT_ENCODER,
    config: TrainConfig | None = None,
    added_items: Sequence[Loaded] = (),
    promote: Promotion | str = Promotion.ALWAYS,
    note: str = "",
    progress: bool = True,
    also_evaluate: dict[str, Sequence[Loaded]] | None = None,
    project: int | None = None,
    judge: Sequence[Loaded] = (),
    guard: float = 0.0,
    margin: float = 0.0,
    stop: Callable[[], bool] | None = None,
) -> FitOutcome:
    """Train from `parent` (a registry version, or "current": the version serving the
    `project` line when training begins) or from ImageNet weights, then register.

    `promote`: "always" makes the new version current; "if-better" only when it passes the
    judge below (otherwise the parent keeps serving, and the outcome says so); "never" only
    registers it. `also_evaluate` names more sets whose ODS is stored in
    the version's metrics beside the validation set's. `project` names the line the new
    version is promoted into (default: the shared one); the switch happens only if that line
    still serves what it served when training began (a rollback meanwhile stays).

    The parent's validation ODS is the one it was registered with when it was measured on
    the same validation images and masks, by the same scoring code on the same kind of
    device (else it is measured now).

    "if-better" with `judge` (labelled images the new version did not train on, e.g. a
    project's newest labels) promotes when the new version's ODS on them is at least the
    parent's minus a margin (`margin` for one image, less for more: `allowed_loss`) and its
    validation ODS fell by at most `guard`; without `judge`, when its validation ODS is at
    least the parent's minus `guard`.

    A judge image that the parent (or an ancestor) trained on cannot test against it: then
    "if-better" registers the new version without promoting it (the caller picked the judge
    for a version the line no longer serves, e.g. after a rollback).

    `stop` is handed to `train`: when it gives the run up, nothing is registered
    (`TrainingStoppedError` propagates).
    """
    promote = Promotion.parse(promote)
    allowed_loss(margin, len(judge))  # a margin no rule can use fails before training
    parent_ods = parent_judged = None
    judge_seen = 0  # judge images the parent or an ancestor trained on
    counts: dict[str, dict[Path, Counts]] = {}
    val_key = validation_key(val_items, resolve_device().type)
    line_before = registry.own_current(project)
    if parent == "current":  # read with the line, so the compare-and-swap matches it
        parent = line_before or registry.resolve("current")
    if parent is not None:
        loaded = registry.load(parent)
        model, encoder, parent = loaded.model, loaded.encoder, loaded.version
        config = config or TrainConfig.adapt()
        if promote is Promotion.IF_BETTER and val_items:
            parent_ods = _stored_val_ods(loaded.meta, val_key)
            if parent_ods is None:
                parent_ods = evaluate(model, encoder, val_items).scores.ods
        if promote is Promotion.IF_BETTER and judge:
            seen = registry.trained_images(parent)
            judge_seen = sum(item.sha256 in seen for item in judge)
            parent_eval = evaluate(model, encoder, judge)
            parent_judged = parent_eval.scores.ods
            counts[parent] = parent_eval.per_image()
    else:
        model = build_model(encoder)
        config = config or TrainConfig.base()
    result = train(
        model,
        encoder,
        train_items,
        val_items,
        config,
        added_items,
        progress=progress,
        tolerance=TOLERANCE_PX,
        stop=stop,
    )
    metrics: dict[str, Any] = {}
    new_counts: dict[Path, Counts] = {}
    if val_items:
        ev = result.evaluation or evaluate(model, encoder, val_items, tolerance=TOLERANCE_PX)
        metrics["val"] = ev.scores.as_dict()
        metrics["val"]["ods_tolerance_2px"] = ev.tolerant.ods if ev.tolerant else None
    for name, items in (also_evaluate or {}).items():
        if items:
            ev = evaluate(model, encoder, items)
            metrics[name] = ev.scores.as_dict()
            new_counts.update(ev.per_image())
    if judge:
        ev = evaluate(model, encoder, judge)
        metrics["held_out"] = ev.scores.as_dict()
        metrics["held_out"]["images"] = len(judge)
        metrics["held_out"]["parent_ods"] = parent_judged
        new_counts.update(ev.per_image())
    meta = {
        "encoder": encoder,
        "encoder_sha256": encoder_sha256(result.state_dict),
        "architecture": "UnetPlusPlus",
        "parent": parent,
        "threshold": result.threshold,
        "metrics": metrics,
        "note": note,
        "training": {
            "images": [_image_record(i) for i in train_items],
            "added_images": [_image_record(i) for i in added_items],
            "validation_images": len(val_items),
            "validation_key": val_key,
            "steps": result.steps,
            "seconds": round(result.seconds, 1),
            "stopped": result.stopped,
            "config": result.config,
            "history": result.history,
        },
    }
    version = registry.register(result.state_dict, meta)
    counts[version] = new_counts
    judged = Judged(
        val=metrics.get("val", {}).get("ods"),
        parent_val=parent_ods,
        held_out=metrics["held_out"]["ods"] if judge else None,
        parent_held_out=parent_judged,
        held_out_images=len(judge),
        guard=guard,
        margin=margin,
    )
    promoted, reason = _decide(promote, parent, judged)
    if promote is Promotion.IF_BETTER and judge_seen:
        promoted = False
        reason = (
            f"not made current: {judge_seen} of its {len(judge)} held-out label(s) show "
            f"images {parent} or an ancestor trained on (the line changed before training); "
            f"the held-out test said: {reason}"
        )
    elif promoted and not registry.promote(version, line_before, reason, project):
        now = registry.current(project)
        promoted, reason = False, f"not made current: the line changed to {now} during training"
    return FitOutcome(version, promoted, reason, result, registry.meta(version), counts)


@dataclass(frozen=True)
class Judged:
    """What a promotion decision compares: validation ODS (new, parent) and ODS on the
    held-out labels (new, parent, how many), the validation ODS a candidate may lose
    (`guard`) and the held-out ODS it may lose on one image (`margin`; see `allowed_loss`)."""

    val: float | None
    parent_val: float | None
    held_out: float | None
    parent_held_out: float | None
    held_out_images: int
    guard: float
    margin: float = 0.0

    def __post_init__(self) -> None:
        allowed_loss(self.margin, self.held_out_images)  # refuses a margin no rule can use


def held_out_count(labels: int) -> int:
    """How many of the newest labels judge a candidate: a quarter, at least one once there
    are two (a single label cannot be both trained on and tested)."""
    return 0 if labels < 2 else max(1, labels // 4)


def allowed_loss(margin: float, images: int) -> float:
    """Held-out ODS a candidate may lose on `images` held-out images: `margin` on one,
    margin / sqrt(n) on n (assumed: the noise of a score over n images shrinks about so),
    rounded to 4 decimals as the decision prints it."""
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    return round(margin / math.sqrt(max(images, 1)), 4)


def within_margin(loss: float, margin: float, images: int) -> bool:
    """Whether losing `loss` held-out ODS on `images` images is allowed (a tie passes)."""
    return loss <= allowed_loss(margin, images) + 1e-9


def _decide(promote: Promotion, parent: str | None, j: Judged) -> tuple[bool, str]:
    if promote is Promotion.NEVER:
        return False, "registered only (promote=never)"
    if promote is Promotion.ALWAYS or parent is None:
        return True, "trained" if parent is None else "adapted"
    val_ok = j.val is None or j.parent_val is None or j.val >= j.parent_val - j.guard
    val_text = (
        f"validation ODS {j.val:.4f} vs its {j.parent_val:.4f}"
        if j.val is not None and j.parent_val is not None
        else "no validation set"
    )
    if j.held_out is not None and j.parent_held_out is not None:
        held = (
            f"ODS on the {j.held_out_images} newest label(s), held out, "
            f"{j.held_out:.4f} vs {parent}'s {j.parent_held_out:.4f}"
        )
        if not val_ok:
            return False, f"kept {parent}: {val_text} fell by more than {j.guard} ({held})"
        if not (math.isfinite(j.held_out) and math.isfinite(j.parent_held_out)):
            return False, f"kept {parent}: {held}: not a number; {val_text}"
        if j.held_out >= j.parent_held_out:
            return True, f"adapted: {held}; {val_text} (guard {j.guard})"
        margin = allowed_loss(j.margin, j.held_out_images)
        if within_margin(j.parent_held_out - j.held_out, j.margin, j.held_out_images):
            return True, (
                f"adapted: {held}, lower by at most the margin {margin} (a test on so few "
                f"images is noisy); {val_text} (guard {j.guard})"
            )
        tolerated = f" by more than the margin {margin}" if margin else ""
        return False, f"kept {parent}: {held}, lower{tolerated}; {val_text}"
    if j.val is None or j.parent_val is None:
        return True, "adapted (no validation ODS to compare)"
    if val_ok:
        rule = f"within {j.guard} of" if j.guard else "at least"
        return True, f"adapted: nothing held out; {val_text} is {rule} the parent's"
    return False, f"kept {parent}: nothing held out; {val_text}, lower by more than {j.guard}"
