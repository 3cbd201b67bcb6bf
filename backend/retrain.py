"""The retraining job: adapt a project's current model to its labels, then re-score.

It reads every current annotation from the Label Studio API (never from webhook payloads,
so a missed webhook only delays training); reconciling does nothing when no annotation
changed since the project's last retrain, unless a scoring stopped before its last page
(then it scores the pool again). Otherwise it writes the
labelled tasks as an image/mask set under `<registry>/labels/project-<id>/`, fine-tunes
the project's current version on the base training set plus those images, evaluates it
(validation ODS, and ODS on the labels), registers it, promotes it into the project's line
when the promotion policy allows, prunes old versions and re-scores the pool. A failure
before the promotion leaves the previous version serving; after it the new version serves,
and a re-score that stops half-way leaves a note, so the project's next job scores the pool
again. After a quick retrain, `thorough_pass`
trains a candidate with the thorough preset on the same labels (the idle job runs it).
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from backend.annotations import is_labelled, latest_annotation
from backend.brush import annotation_mask
from backend.edit_records import EditLog, EditRecord, make_record, starting_prediction
from backend.last_retrain import read_last_retrain, write_last_retrain
from backend.pool_store import PoolStore
from backend.prediction_label import labelled_version
from backend.project_threshold import (
    forget_threshold,
    load_threshold,
    save_threshold,
    threshold_recorded,
)
from backend.retention import apply_retention
from backend.service import RescoreReport, Service
from backend.task_image import TaskImageError
from selection.atomic import atomic_write
from selection.images import decode_rgb
from training.data import Loaded, find_samples, load
from training.evaluate import evaluate
from training.fit import FitOutcome, Promotion, fit_version, held_out_count
from training.metrics import Counts
from training.registry import Registry, version_threshold
from training.threshold_choice import choose_threshold, refit_refused
from training.train import Adaptation, TrainConfig, TrainingStoppedError

log = logging.getLogger("crackal.retrain")

# Validation ODS (on CRACKAL_BASE_VAL) a project's candidate may lose and still be promoted:
# a small loss on the base domain is the expected price of adapting to the project's.
PROMOTION_GUARD = 0.03
# Held-out ODS a candidate may lose on one held-out image and still be promoted (on n images
# PROMOTION_MARGIN / sqrt(n)): one image's ODS is a noisy test (benchmarks/adaptation_queue.py).
PROMOTION_MARGIN = 0.1
SUFFIX_OF_FORMAT = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "BMP": ".bmp"}


def labels_folder(service: Service, project_id: int) -> Path:
    return Path(service.settings.registry) / "labels" / f"project-{project_id}"


def export_labels(service: Service, project_id: int) -> tuple[Path, list[int], dict[int, str]]:
    """Write every labelled task's image and mask (latest annotation) as a dataset folder,
    streaming the project's tasks; returns the folder, the task ids in it and, per task
    whose label could not be used, the reason (each such task is skipped alone). Each new
    annotation revision that started from a crackal prediction also gets its edit record.

    A brush mask whose size differs from the image's is skipped, not resized: it was drawn
    on another image (e.g. one replaced since), and a stretched mask would teach wrong
    pixels."""
    target = service.target(project_id)
    folder = labels_folder(service, project_id)
    fresh = folder.with_name(folder.name + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    (fresh / "images").mkdir(parents=True)
    (fresh / "masks").mkdir()
    exported: list[int] = []
    skipped: dict[int, str] = {}
    edits = EditLog(service.settings.registry, project_id)
    recorded, new_edits = edits.keys(), []
    distances = PoolStore(service.settings.registry, project_id).load_distances()
    for task in service.client.tasks(project_id):
        if not is_labelled(task) or not isinstance(task.get("id"), int):
            continue
        tid = task["id"]
        try:
            data = service.fetch_image(task, target)
            shape = decode_rgb(data, f"task {tid}").shape[:2]
            annotation = latest_annotation(task)
            mask = annotation_mask(annotation.get("result"), target, shape)
            record = _edit_record(task, annotation, mask, target, recorded, distances)
            if record is not None:
                new_edits.append(record)
            _write_image(fresh / "images" / f"task-{tid}", data)
            with atomic_write(fresh / "masks" / f"task-{tid}.png") as fh:
                Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(fh, "PNG")
        except TaskImageError as exc:
            skipped[tid] = f"image: {exc}"
        except Exception as exc:  # this label only: the others still train
            skipped[tid] = f"annotation: {getattr(exc, 'reason', None) or exc}"[:300]
        else:
            exported.append(tid)
            continue
        log.warning("project %s task %s: label not used: %s", project_id, tid, skipped[tid])
        for stale in fresh.glob(f"*/task-{tid}.*"):
            stale.unlink()
    shutil.rmtree(folder, ignore_errors=True)
    fresh.rename(folder)
    edits.append(new_edits)
    return folder, exported, skipped


def _edit_record(
    task: dict[str, Any],
    annotation: dict[str, Any],
    label: np.ndarray,
    target: Any,
    recorded: set[tuple[int, str]],
    distances: tuple[str | None, dict[int, float]],
) -> EditRecord | None:
    """The edit record of this annotation revision, when it is new and started from one of
    our predictions whose mask can be read (else None: a record never costs a label)."""
    prediction = starting_prediction(task, annotation)
    if prediction is None or not isinstance(annotation.get("id"), int):
        return None
    updated = str(annotation.get("updated_at") or annotation.get("created_at") or "")
    if (annotation["id"], updated) in recorded:
        return None
    try:
        predicted = annotation_mask(prediction.get("result"), target, label.shape)
    except Exception as exc:  # the prediction's mask is unreadable: no record
        log.warning("task %s: no edit record: %s", task.get("id"), exc)
        return None
    version, scaled = distances
    same = version is not None and labelled_version(prediction.get("model_version")) == version
    distance = scaled.get(task["id"]) if same else None
    return make_record(task["id"], annotation, prediction, predicted, label, distance)


def _write_image(stem: Path, data: bytes) -> None:
    """The original bytes when the format is one the datasets use, else a PNG."""
    with Image.open(io.BytesIO(data)) as img:
        suffix = SUFFIX_OF_FORMAT.get(img.format or "")
        if suffix is None:
            with atomic_write(stem.with_suffix(".png")) as fh:
                Image.fromarray(decode_rgb(data, stem.name)).save(fh, "PNG")
            return
    with atomic_write(stem.with_suffix(suffix)) as fh:
        fh.write(data)


def label_revisions(service: Service, project_id: int) -> dict[int, tuple[str, str]]:
    """Labelled task id -> (when its annotation last changed, annotation id): one streamed
    pass over the project's tasks, no image fetched."""
    revisions: dict[int, tuple[str, str]] = {}
    for task in service.client.tasks(project_id):
        annotation = latest_annotation(task) if isinstance(task.get("id"), int) else None
        if annotation is None:
            continue
        updated = str(annotation.get("updated_at") or annotation.get("created_at") or "")
        revisions[task["id"]] = (updated, str(annotation.get("id")))
    return revisions


def fingerprint(revisions: dict[int, tuple[str, str]], tasks: Iterable[int]) -> str:
    """A hash of the annotation revisions of `tasks`."""
    digest = hashlib.sha256()
    for tid in sorted(tasks):
        digest.update(f"{tid}:{revisions[tid][1]}:{revisions[tid][0]}\n".encode())
    return digest.hexdigest()


def too_few_changes(
    service: Service,
    project_id: int,
    min_changes: int,
    revisions: dict[int, tuple[str, str]] | None = None,
) -> dict | None:
    """What a retrain asking for `min_changes` new labels would answer without doing
    anything (no labels, too few new ones), or None when it has work: training, every
    label deleted while a threshold fitted on them is recorded (it is dropped), or a
    scoring that stopped before its last page (the pool is scored again). `revisions`:
    the project's `label_revisions` when the caller has listed them already."""
    if min_changes <= 0:
        return None
    if PoolStore(service.settings.registry, project_id).stopped_half_way():
        return None
    if revisions is None:
        revisions = label_revisions(service, project_id)
    if not revisions and threshold_recorded(load_threshold(service.settings.registry, project_id)):
        return None
    return _too_few_changes(project_id, revisions, last_trained(service, project_id), min_changes)


def _too_few_changes(
    project_id: int, revisions: dict, before: dict[str, Any], min_changes: int
) -> dict | None:
    if not revisions:
        return {"status": "no labels yet", "project": project_id}
    changed = changed_labels(revisions, before)
    if min_changes <= 0 or len(changed) >= min_changes:
        return None
    return {
        "status": "no new labels" if not changed else "too few new labels",
        "project": project_id,
        "labels": len(revisions),
        "changed": len(changed),
        "needed": min_changes,
        "last_trained": before.get("version"),
    }


def changed_labels(revisions: dict[int, tuple[str, str]], before: dict[str, Any]) -> list[int]:
    """Tasks whose label is new, changed or deleted since the retrain `before` recorded
    (labels it held out count as not trained on)."""
    trained = before.get("revisions")
    if not isinstance(trained, dict):  # no per-label record: all or nothing
        same = before.get("fingerprint") == fingerprint(revisions, revisions)
        return [] if same else sorted(revisions)
    changed = {t for t in revisions if trained.get(str(t)) != _revision(revisions[t])}
    deleted = {int(t) for t in trained if t.isdigit() and int(t) not in revisions}
    return sorted(changed | deleted)


def _revision(revision: tuple[str, str]) -> str:
    return f"{revision[1]}:{revision[0]}"


def last_trained(service: Service, project_id: int) -> dict[str, Any]:
    """What the project's last finished retrain trained on ({} before the first)."""
    return read_last_retrain(service.holder.registry.root, project_id)


def retrain_project(
    service: Service,
    project_id: int,
    promote: Promotion = Promotion.IF_BETTER,
    config: TrainConfig | None = None,
    min_changes: int = 0,
    rescore: Callable[[int], RescoreReport] | None = None,
    preset: Adaptation = Adaptation.QUICK,
) -> dict[str, Any]:
    """Adapt the project's current model to its labels (when `min_changes` > 0, only once
    that many labels are new or changed since the last retrain); returns what happened. The
    new version is promoted into the project's own line (a project never switches the
    shared base model); then the pool is re-scored (`rescore`, by default
    `service.rescore_project`). `preset` names the one `config` comes from (recorded: after
    a quick one, a thorough pass may follow, `thorough_pass`)."""
    settings = service.settings
    revisions = label_revisions(service, project_id)
    before = last_trained(service, project_id)
    rescore = rescore or service.rescore_project
    waiting = _too_few_changes(project_id, revisions, before, min_changes)
    if not revisions and forget_threshold(settings.registry, project_id, "no labels"):
        rescore(project_id)  # every label deleted: masks at the version's own threshold again
        return {**waiting, "threshold": "the version's own again"}
    if waiting is not None:
        if PoolStore(settings.registry, project_id).pages_unfinished():
            report = rescore(project_id)  # e.g. this job's own, before a retry
            return {
                **waiting,
                "rescored": "after a scoring that stopped before its last page",
                "serving": report.model_version,
            }
        return waiting
    folder, task_ids, skipped = export_labels(service, project_id)
    skipped_out = {str(k): v for k, v in skipped.items()}
    if not task_ids:
        forgot = forget_threshold(settings.registry, project_id, "no usable labels")
        if forgot or PoolStore(settings.registry, project_id).pages_unfinished():
            rescore(project_id)
        everything = fingerprint(revisions, revisions)
        every = {str(t): _revision(r) for t, r in revisions.items()}
        _record_trained(
            service, project_id, everything, None, "no usable labels", skipped_out, None, every
        )
        return {"status": "no usable labels", "project": project_id, "skipped": skipped_out}
    labels = load(find_samples(folder, set_name=f"project-{project_id}"))
    judge: list = []
    judged_before = set(before.get("held_out") or [])
    if promote is Promotion.IF_BETTER:  # the newest labels test the candidate before training it
        labels.sort(key=lambda item: revisions.get(_task_of(item), ("", ""))[0])
        judge = judge_labels(labels, judged_before, _seen_by_serving(service, project_id))
        labels = [i for i in labels if i not in judge]
    note = f"adapted to {len(labels)} labels of Label Studio project {project_id}"
    config = config or TrainConfig.adapt()
    outcome, threshold = _adapt(service, project_id, labels, judge, config, promote, note)
    judged = {_task_of(i) for i in judge}
    held = sorted(judged_before | judged)
    trained = [t for t in revisions if t not in judged]
    _record_trained(  # the labels held out now count as not yet trained on: reconciled later
        service,
        project_id,
        fingerprint(revisions, trained),
        outcome.version,
        outcome.reason,
        skipped_out,
        held,
        {str(t): _revision(revisions[t]) for t in trained},
        {"preset": preset.value, "round_judge": sorted(judged)},
    )
    rescored = rescore(project_id)
    return {
        "status": "trained",
        "project": project_id,
        "labels": len(labels),
        "held_out": [_task_of(item) for item in judge],
        "tasks": task_ids,
        "skipped": skipped_out,
        **_outcome_fields(outcome, threshold, rescored),
        # seconds into the re-score until Label Studio's queue followed its predictions
        "queue_ordered_after_s": rescored.ordered_after_s,
    }


def judge_labels(labels: list[Loaded], judged_before: set[int], seen: set[str]) -> list[Loaded]:
    """The labels (oldest first) that test a candidate: the newest `held_out_count` of
    those never judged before whose image neither the version it is compared with (and
    its ancestors: content hashes `seen`) nor another of the labels holds (the candidate
    would train on its twin)."""
    hashes = [i.sha256 for i in labels]
    holders = Counter(hashes)
    fresh = [
        i
        for i, h in zip(labels, hashes, strict=True)
        if _task_of(i) not in judged_before and h not in seen and holders[h] == 1
    ]
    return fresh[len(fresh) - min(held_out_count(len(labels)), len(fresh)) :]


def _seen_by_serving(service: Service, project_id: int) -> set[str]:
    """Content hashes of the images the project's serving version (and its ancestors)
    trained on: a label among them cannot test a candidate against it (`fit_version`
    checks again against the version it trains from)."""
    registry = service.holder.registry
    serving = registry.current(project_id)
    return registry.trained_images(serving) if serving else set()


def _outcome_fields(
    outcome: FitOutcome, threshold: dict[str, Any] | None, rescored: RescoreReport
) -> dict[str, Any]:
    """What a job result says of the candidate it trained and what serves after it."""
    return {
        "version": outcome.version,
        "parent": outcome.meta["parent"],
        "promoted": outcome.promoted,
        "reason": outcome.reason,
        "metrics": outcome.meta["metrics"],
        "threshold": threshold,
        "serving": rescored.model_version,
    }


def _adapt(
    service: Service,
    project_id: int,
    labels: list,
    judge: list,
    config: TrainConfig,
    promote: Promotion,
    note: str,
    stop: Callable[[], bool] | None = None,
) -> tuple[FitOutcome, dict[str, Any] | None]:
    """A candidate from the project's current version trained on P plus `labels`, judged on
    `judge` against the current one (promoted per `promote`); then the project's threshold
    refitted on all of them (from the counts the fit measured, where they are of the
    version serving then) and old versions retired."""
    settings = service.settings
    base = load(find_samples(settings.base_train)) if settings.base_train else []
    val = load(find_samples(settings.base_val)) if settings.base_val else []
    registry = service.holder.registry
    outcome = fit_version(
        registry,
        base,
        val,
        parent="current",
        added_items=labels,
        config=config,
        promote=promote,
        progress=False,
        note=note,
        also_evaluate={"labelled": labels},
        project=project_id,
        judge=judge,
        guard=PROMOTION_GUARD,
        margin=PROMOTION_MARGIN,
        stop=stop,
    )
    log.info("project %s: %s (%s)", project_id, outcome.version, outcome.reason)
    try:
        threshold = refit_threshold(service, project_id, [*labels, *judge], outcome.counts)
        apply_retention(registry, settings.cache, settings.keep_versions)
    except OSError as exc:  # a full disk: the new version stands, the rest waits
        log.error("project %s: threshold or retention skipped: %s", project_id, exc)
        threshold = None
    return outcome, threshold


def thorough_due(before: dict[str, Any], revisions: dict[int, tuple[str, str]]) -> bool:
    """Whether the last retrain (`before`) was a quick one whose labels are unchanged: of
    the labels changed since, none but the ones it held out to judge."""
    if before.get("preset") != Adaptation.QUICK or before.get("version") is None:
        return False
    return judged_only(before, revisions)


def judged_only(before: dict[str, Any], revisions: dict[int, tuple[str, str]]) -> bool:
    """Whether, of the labels changed since the retrain `before`, none is but the ones that
    retrain held out to judge its candidate."""
    judged = set(before.get("round_judge") or [])
    return set(changed_labels(revisions, before)) <= judged


class ThoroughStatus(StrEnum):
    """How a thorough pass ended."""

    NOT_DUE = "no thorough pass due"
    DONE = "thorough pass"
    NO_USABLE_LABELS = "no usable labels for a thorough pass"
    LABELS_CHANGED = "labels changed during the thorough pass"  # the next retrain has them
    YIELDED = "thorough pass yielded to waiting jobs"  # tried again at the next pause


def thorough_pass(
    service: Service,
    project_id: int,
    config: TrainConfig,
    promote: Promotion = Promotion.IF_BETTER,
    rescore: Callable[[int], RescoreReport] | None = None,
    stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """After a quick retrain, while labelling pauses: a candidate trained with `config` (the
    thorough preset) on the same labels and judged on the same held-out ones against the
    project's current version, i.e. the quick candidate when it was promoted (neither saw
    those labels). Nothing is done when it is not due (`thorough_due`), or kept when a
    label changed before the training began; when `stop` says so during the training (other
    jobs wait) the candidate is dropped and the pass stays due."""
    before = last_trained(service, project_id)
    if not thorough_due(before, label_revisions(service, project_id)):
        return {"status": ThoroughStatus.NOT_DUE, "project": project_id}
    folder, task_ids, skipped = export_labels(service, project_id)
    if not thorough_due(before, label_revisions(service, project_id)):  # changed meanwhile
        return {"status": ThoroughStatus.LABELS_CHANGED, "project": project_id}
    items = load(find_samples(folder, set_name=f"project-{project_id}"))
    judged = set(before.get("round_judge") or [])
    judge = [i for i in items if _task_of(i) in judged]
    labels = [i for i in items if _task_of(i) not in judged]
    skipped_out = {str(k): v for k, v in skipped.items()}
    trained = {int(t) for t in before.get("revisions") or {}} - {
        int(t) for t in before.get("skipped") or {}
    }
    if labels and {_task_of(i) for i in labels} != trained:  # e.g. an image unreachable now
        return {"status": ThoroughStatus.LABELS_CHANGED, "project": project_id}

    def record(version: str | None, decision: str) -> None:
        _record_trained(  # the same labels as the quick retrain: only the outcome is new
            service, project_id, before["fingerprint"], version, decision, skipped_out,
            before.get("held_out"), before.get("revisions"),
            {"preset": Adaptation.THOROUGH.value, "round_judge": sorted(judged)},
        )  # fmt: skip

    if not labels:  # recorded, so that the next pause does not export them again
        record(before.get("version"), ThoroughStatus.NO_USABLE_LABELS)
        return {"status": ThoroughStatus.NO_USABLE_LABELS, "project": project_id}
    note = f"thorough pass over {len(labels)} labels of Label Studio project {project_id}"
    try:
        outcome, threshold = _adapt(service, project_id, labels, judge, config, promote, note, stop)
    except TrainingStoppedError as exc:
        log.info("project %s: thorough pass yielded to waiting jobs (%s)", project_id, exc)
        return {"status": ThoroughStatus.YIELDED, "project": project_id, "why": str(exc)}
    record(outcome.version, outcome.reason)
    rescored = rescore(project_id) if rescore else service.rescore_project(project_id)
    return {
        "status": ThoroughStatus.DONE,
        "project": project_id,
        "labels": len(labels),
        "held_out": sorted(judged),
        "tasks": task_ids,
        **_outcome_fields(outcome, threshold, rescored),
        "train_seconds": round(outcome.result.seconds, 1),
        "steps": outcome.result.steps,
    }


def thorough_yielded(result: dict[str, Any]) -> bool:
    """Whether a job's result (or the thorough pass inside it) says the pass yielded."""
    inner = result.get("thorough")
    inner_status = inner.get("status") if isinstance(inner, dict) else None
    return ThoroughStatus.YIELDED in (result.get("status"), inner_status)


def refit_threshold(
    service: Service,
    project_id: int,
    labels: list[Loaded],
    known: dict[str, dict[Path, Counts]] | None = None,
) -> dict[str, Any] | None:
    """Move the serving version's mask threshold toward the pooled ODS threshold of all the
    project's labelled images, and keep it for the project's pre-annotations if it wins
    leave-one-out against the version's own (`training.threshold_choice`); else the
    version's own serves. The decision is recorded either way (`save_threshold`). None: too
    few labels, or none shows a crack; the version's own serves (a threshold fitted on labels
    since deleted or emptied does not stay). `known`: per-image counts already measured
    (version -> image path -> counts, as `FitOutcome.counts`); only the labelled images
    missing there are predicted again."""
    registry = service.holder.registry
    unfit = refit_refused(len(labels), any(item.mask.any() for item in labels))
    if unfit is not None:
        version = registry.current(project_id)
        if version is not None:
            save_threshold(service.settings.registry, project_id, version, None, len(labels),
                           reason=unfit)  # fmt: skip
        log.info("project %s: threshold not refitted: %s", project_id, unfit)
        return None
    version = registry.resolve("current", project_id)
    own = version_threshold(registry.meta(version))
    counts = _counts_of(registry, version, labels, (known or {}).get(version, {}))
    choice = choose_threshold(counts, own)
    figures = {
        "version_threshold": own,
        "refit": choice.refit,
        "moved": choice.moved,
        "labels_ods": choice.refit_f,
        "leave_one_out_f": choice.leave_one_out_f,
        "version_f": choice.version_f,
        "reason": choice.reason,
    }
    save_threshold(
        service.settings.registry, project_id, version, choice.threshold, len(labels),
        **figures,
    )  # fmt: skip
    if choice.threshold is None:
        log.info("project %s: threshold %s kept: %s", project_id, own, choice.reason)
    else:
        log.info("project %s: threshold %s: %s", project_id, choice.threshold, choice.reason)
    return {
        "version": version,
        "threshold": choice.threshold,
        "labels": len(labels),
        **figures,
    }


def _counts_of(
    registry: Registry, version: str, labels: list[Loaded], known: dict[Path, Counts]
) -> Counts:
    """Per-image counts of `labels` under `version`: those in `known`, the rest predicted
    now (the model is loaded only when one is missing)."""
    missing = [item for item in labels if item.sample.image not in known]
    if missing:
        loaded = registry.load(version)
        known = {**known, **evaluate(loaded.model, loaded.encoder, missing).per_image()}
    return Counts.stack(known[item.sample.image] for item in labels)


def _task_of(item: Any) -> int:
    return int(item.sample.image.stem.removeprefix("task-"))


def _record_trained(
    service: Service,
    project_id: int,
    label_hash: str,
    version: str | None,
    decision: str,
    skipped: dict[str, str],
    held_out: list[int] | None = None,
    revisions: dict[str, str] | None = None,
    round_: dict[str, Any] | None = None,
) -> None:
    state = {
        **(round_ or {}),  # the preset and this round's held-out labels
        "held_out": held_out or [],
        "revisions": revisions or {},
        "fingerprint": label_hash,
        "version": version,
        "decision": decision,
        "time": time.time(),
        "skipped": skipped,
    }
    write_last_retrain(service.holder.registry.root, project_id, state)
