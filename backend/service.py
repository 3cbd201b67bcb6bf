"""Project-level operations of the backend, shared by the HTTP handlers and the jobs.

- `rescore_project` (a job): streams the project's tasks page by page, fetches for the
  features only images of new tasks or changed URLs (features and masks are cached by
  content; the walk down the queue fetches again the images whose mask is not cached, as
  after a new version or threshold), fits the
  method on P u S (P = base set + labelled tasks, S = the rest), stores the fit, then in
  the queue's order masks what is not cached, imports the new predictions a page at a
  time and removes crackal's older predictions of those tasks (never other backends' or
  imported ones); the queue is ordered after the first page.
- `predict` (a request): fetches and embeds only the tasks asked for and scores them with
  the project's stored fit (provisional numbers, clipped to [0, 1], until the next job).
A task whose image or annotation is unusable gets a recorded reason and costs only itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import requests

from backend.annotations import is_labelled
from backend.brush import mask_rle, rle_result
from backend.edit_records import EditLog
from backend.label_config import BrushTarget, parse_brush_target
from backend.label_studio import LabelStudio, LabelStudioError
from backend.mask_cache import MaskCache
from backend.model_holder import ModelHolder, Serving
from backend.pool_store import PoolStore
from backend.prediction_label import labelled_version, version_label
from backend.project_map import LABELLED, ProjectMap
from backend.project_options import load_options
from backend.project_threshold import project_threshold
from backend.settings import Settings
from backend.task_image import TaskImageError, fetch_task_image, image_url
from selection.distance_fit import DistanceFit
from selection.expected_f import ExpectedF
from selection.images import content_hash, decode_rgb
from selection.queue_order import queue_scores
from selection.strategies import Strategy
from training.predict import predict_probs

log = logging.getLogger("crackal.backend")

SAMPLING = "Uncertainty sampling"
IMPORT_BATCH = 100
# tasks of the queue's first page (and of each page with masks to make), imported before
# the queue follows a new version and joining it as they are masked
FRONT_PAGE = 10


def project_id_of(value: Any) -> int:
    """Label Studio sends the project as 7, "7", "7.1712345678" or {"id": 7, ...}."""
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, bool):
        raise ValueError(f"not a project id: {value!r}")
    try:
        return int(str(value).split(".")[0])
    except (TypeError, ValueError):
        raise ValueError(f"not a project id: {value!r}") from None


@dataclass
class Analysed:
    """What one task's image gave: its content hash, feature row and (maybe) mask."""

    sha: str
    features: np.ndarray
    mask: tuple[list[int], tuple[int, int]] | None = None  # (RLE, (h, w))


@dataclass
class Walked:
    """What a walk over tasks gathered: per task its index entry (image URL and content
    hash) and feature row; the labelled tasks; why tasks failed; crackal's older predictions
    of each task (and, when it has one, what it shows); the tasks whose masks wait for the
    queue's order; how many images it fetched and how many tasks it saw."""

    index: dict[int, dict[str, str]] = field(default_factory=dict)
    features: dict[int, np.ndarray] = field(default_factory=dict)
    labelled: set[int] = field(default_factory=set)
    errors: dict[int, str] = field(default_factory=dict)
    old_predictions: dict[int, list[int]] = field(default_factory=dict)
    shown: dict[int, str] = field(default_factory=dict)  # task -> `shown_key` of ours
    # unlabelled tasks whose features were cached but whose mask was not ({"id", "data"}):
    # their images are fetched and masked in the queue's order, after the fit
    deferred: dict[int, dict[str, Any]] = field(default_factory=dict)
    fetched: int = 0
    seen: int = 0


@dataclass
class RescoreReport:
    project: int
    model_version: str
    tasks: int
    predictions: int
    labelled: int
    fetched: int  # images downloaded by this run (the others were known and cached)
    removed: int  # older crackal predictions removed after the import
    kept: int = 0  # predictions Label Studio already showed unchanged (not imported again)
    # masks predicted after the fit, in the queue's order (their features were cached)
    masked_in_order: int = 0
    # seconds into this re-score (after any shard pages) until the queue was ordered
    ordered_after_s: float | None = None
    errors: dict[int, str] = field(default_factory=dict)
    shards: list[dict[str, Any]] = field(default_factory=list)  # pages analysed beforehand

    def as_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "model_version": self.model_version,
            "tasks": self.tasks,
            "predictions": self.predictions,
            "labelled": self.labelled,
            "fetched": self.fetched,
            "removed": self.removed,
            "kept": self.kept,
            "masked_in_order": self.masked_in_order,
            "ordered_after_s": self.ordered_after_s,
            "errors": {str(k): v for k, v in self.errors.items()},
            "shards": self.shards,
        }


class Service:
    """The backend's work on Label Studio projects."""

    def __init__(
        self,
        settings: Settings,
        holder: ModelHolder | None = None,
        client: LabelStudio | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.settings = settings
        self.holder = holder or ModelHolder(settings)
        self.client = client or LabelStudio(settings)
        self.session = session or requests.Session()
        # each project's expected-F curve and the edit log stamp it was fitted at
        self._curves: dict[int, tuple[tuple[int, int, int] | None, ExpectedF | None]] = {}

    def project_settings(self, project: Any) -> Settings:
        """The settings with the project's own options (its Label Studio extra params)."""
        try:
            project_id = project_id_of(project)
        except ValueError:
            return self.settings
        return load_options(self.settings.registry, project_id).applied(self.settings)

    def project_created(self, project_id: int) -> str:
        """When Label Studio created the project (tells a project from one that reuses its
        id after Label Studio's database was reset)."""
        return _created(self.client.project(project_id))

    def target(self, project_id: int, project: dict[str, Any] | None = None) -> BrushTarget:
        """The brush control to predict into, from the project's label config (`project`:
        Label Studio's project record when the caller already has it)."""
        config = (project or self.client.project(project_id))["label_config"]
        label = self.project_settings(project_id).crack_label
        return parse_brush_target(config, label or None)

    def threshold(self, serving: Serving, project: int | None) -> float:
        """The project's own threshold for this version when refitted, else the version's."""
        own = project_threshold(self.settings.registry, project, serving.version)
        return serving.model.threshold if own is None else own

    def masks(self, serving: Serving, threshold: float) -> MaskCache:
        return MaskCache(self.settings.cache, serving.model.meta["weights_sha256"], threshold)

    # -- per-task work ----------------------------------------------------------------------
    def analyse(
        self,
        serving: Serving,
        batch: Sequence[tuple[int, bytes, bool]],
        errors: dict[int, str],
        project: int | None = None,
    ) -> dict[int, Analysed]:
        """Features (and, where the flag asks, masks) of (task id, image bytes, want mask)
        items; cached ones cost no model time. Failures go to `errors`, one task each."""
        threshold = self.threshold(serving, project)
        masks = self.masks(serving, threshold)
        out: dict[int, Analysed] = {}
        to_embed: list[tuple[int, np.ndarray]] = []
        for tid, data, want_mask in batch:
            try:
                sha = content_hash(data)
                row = serving.cache.get(sha)
                mask = masks.get(sha) if want_mask else None
                rgb = None
                if row is None or (want_mask and mask is None):
                    rgb = decode_rgb(data, f"task {tid}")
                if want_mask and mask is None:
                    loaded = serving.model
                    bits = predict_probs(loaded.model, rgb, loaded.encoder, runner=serving.onnx)
                    bits = bits > threshold
                    mask = (mask_rle(bits), bits.shape)
                    _remember(masks.put, sha, *mask)
                if row is None:  # only the extractor's small copy waits for the batch
                    to_embed.append((tid, serving.extractor.shrink(rgb)))
                out[tid] = Analysed(sha, row, mask)
            except Exception as exc:  # this task's image only
                errors[tid] = _reason(exc)
                out.pop(tid, None)
        try:
            rows = serving.extractor([small for _, small in to_embed]) if to_embed else []
        except Exception:  # find the image that failed: one at a time
            rows = []
            for tid, small in to_embed:
                try:
                    rows.append(serving.extractor([small])[0])
                except Exception as exc:
                    rows.append(None)
                    errors[tid] = f"features failed: {_reason(exc)}"
        for (tid, _), row in zip(to_embed, rows, strict=True):
            if row is None:
                out.pop(tid, None)
                continue
            _remember(serving.cache.put, out[tid].sha, row)
            out[tid].features = row
        return out

    def fetch_image(self, task: dict[str, Any], target: BrushTarget) -> bytes:
        return fetch_task_image(task, target, self.settings, self.session, self.client)

    def authorise_webhooks(self, project_id: int) -> int | None:
        """Label Studio creates a webhook to `<backend>/webhook` without credentials just
        after a backend is connected. Give ours (the webhook of a connected ML backend whose
        basic auth user is ours) the backend's basic auth header. Returns how many changed,
        or None when no webhook of ours exists (yet)."""
        user, password = self.settings.basic_auth_user, self.settings.basic_auth_password
        if not user:
            return 0
        header = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        ours = {
            str(b.get("url") or "").rstrip("/") + "/webhook"
            for b in self.client.ml_backends(project_id)
            if b.get("basic_auth_user") == user
        }
        hooks = [
            h
            for h in self.client.webhooks(project_id)
            if str(h.get("url") or "").rstrip("/") in ours
        ]
        changed = 0
        for hook in hooks:
            headers = hook.get("headers") if isinstance(hook.get("headers"), dict) else {}
            if headers.get("Authorization") != header:
                self.client.set_webhook_headers(hook["id"], {**headers, "Authorization": header})
                changed += 1
        return changed if hooks else None

    def try_authorise_webhooks(self, project_id: int) -> bool:
        """`authorise_webhooks`, logged; True once the project's webhook carries our
        credentials. A failure only means events answer 401 until the next try."""
        try:
            changed = self.authorise_webhooks(project_id)
        except LabelStudioError as exc:
            log.warning("project %s: webhook not authorised: %s", project_id, exc)
            return False
        if changed:
            log.info("project %s: webhook given the backend's credentials", project_id)
        return changed is not None

    # -- the scoring job --------------------------------------------------------------------
    def walk_tasks(
        self,
        serving: Serving,
        project_id: int,
        tasks: Iterable[dict[str, Any]],
        known: dict[int, dict[str, str]],
        target: BrushTarget,
    ) -> Walked:
        """Features (and masks of unlabelled tasks) of `tasks`, fetching only images that
        are new, whose URL changed or whose features are not cached (`known`: the stored
        index). An image fetched is masked at once; one whose features were cached and
        whose mask was not is left in `deferred` (a new version's masks wait for the
        queue's order). Memory: one batch of images and a feature row per task."""
        masks = self.masks(serving, self.threshold(serving, project_id))
        walked = Walked()
        pending: list[tuple[int, str, bytes, bool]] = []

        def flush() -> None:
            batch = [(tid, data, not lab) for tid, _, data, lab in pending]
            urls = {tid: url for tid, url, _, _ in pending}
            for tid, result in self.analyse(serving, batch, walked.errors, project_id).items():
                walked.features[tid] = result.features
                walked.index[tid] = {"url": urls[tid], "sha": result.sha}
            pending.clear()

        for task in tasks:
            walked.seen += 1
            tid = task.get("id")
            if not isinstance(tid, int):
                continue
            walked.old_predictions[tid] = _our_predictions(task)
            shown = shown_of(task)
            if shown is not None:
                walked.shown[tid] = shown
            lab = is_labelled(task)
            if lab:
                walked.labelled.add(tid)
            try:
                url = image_url(task, target)
                entry = known.get(tid)
                if entry and entry.get("url") == url:
                    row = serving.cache.get(entry["sha"])
                    if row is not None:
                        walked.features[tid], walked.index[tid] = row, entry
                        if not (lab or masks.has(entry["sha"])):
                            walked.deferred[tid] = {"id": tid, "data": task.get("data")}
                        continue
                data = self.fetch_image(task, target)
                walked.fetched += 1
            except TaskImageError as exc:
                walked.errors[tid] = str(exc)
                continue
            pending.append((tid, url, data, lab))
            if len(pending) >= self.settings.batch_size:
                flush()
        flush()
        return walked

    def rescore_project(
        self,
        project_id: int,
        shard_run: str | None = None,
        front: int = FRONT_PAGE,
        page_size: int = IMPORT_BATCH,
    ) -> RescoreReport:
        """Score every task, import the predictions, remove crackal's older ones, order the
        queue. Images that the pages of `shard_run` (backend/scoring_shards.py) analysed are
        not fetched again. Masks the walk did not make (a new version or threshold over
        cached features) are made in the queue's order, a page at a time, each page imported
        as soon as it is masked (`front` tasks a page while masks are made, else
        `page_size`); the queue is ordered after the first page that shows this version, so
        annotators get the new version's first tasks while the rest are still masked. A
        job that fails or is killed while going down the queue leaves a note
        (`PoolStore.begin_pages`), so the project's next job, a retrain's retry too, scores
        the pool again. Memory: one page
        of tasks, one batch of images and a feature row per task."""
        started = time.monotonic()
        serving = self.holder.current(project_id)
        options = load_options(self.settings.registry, project_id)
        record = self.client.project(project_id)
        target = self.target(project_id, record)
        store = PoolStore(self.settings.registry, project_id)
        masks = self.masks(serving, self.threshold(serving, project_id))
        known = store.load_index()
        if shard_run is not None:
            known.update(store.load_shard_indexes(shard_run))
        walked = self.walk_tasks(serving, project_id, self.client.tasks(project_id), known, target)
        index, features, labelled = walked.index, walked.features, walked.labelled
        errors = walked.errors
        for tid, reason in errors.items():
            log.warning("project %s task %s: %s", project_id, tid, reason)

        scores = self._fit_and_score(
            serving, store, features, labelled, errors, options.applied(self.settings)
        )
        store.save_index(index)
        label = version_label(serving.version)
        imported = kept = removed = masked = 0
        stale: list[int] = []  # older crackal predictions of tasks that got a new one
        ordered_after: float | None = None
        queue = sorted(scores, key=lambda t: (scores[t], t))  # the order Label Studio serves
        marker = (serving.version, options.key(self.settings), _created(record))
        store.begin_pages()
        for page in _pages(queue, walked.deferred, front, page_size):
            masked += self._mask_deferred(serving, project_id, page, walked, target)
            batch: list[dict[str, Any]] = []
            for tid in page:
                mask = masks.get(index[tid]["sha"]) if tid not in errors else None
                if mask is None:
                    errors.setdefault(tid, "mask missing from the cache")
                    continue
                prediction = _prediction(tid, serving.version, scores[tid], mask, target)
                result = prediction["result"][0]
                if walked.shown.get(tid) == shown_key(label, scores[tid], result):
                    kept += 1  # Label Studio already shows this very prediction
                    continue
                batch.append(prediction)
            if batch:
                done = self._import(project_id, batch, errors)
                imported += len(done)
                stale += [p for t in done for p in walked.old_predictions.get(t, [])]
            if ordered_after is None and imported + kept:
                self._order(project_id, serving, store, errors, marker)
                ordered_after = time.monotonic() - started
            if len(stale) >= page_size:  # deleted many at a time: each is a slow call
                removed += self.client.delete_predictions(stale)
                stale = []
        if ordered_after is None:  # nothing of this version to show: order by it anyway
            self._order(project_id, serving, store, errors, marker)
            ordered_after = time.monotonic() - started
        removed += self.client.delete_predictions(stale)
        store.end_pages()
        store.save_index(index)
        store.save_skipped(errors)
        self.try_authorise_webhooks(project_id)
        log.info(
            "project %s: %d predictions imported, %d unchanged kept (model %s), %d fetched, "
            "%d masked in the queue's order, %d old removed, %d errors, queue ordered after "
            "%.1f s",
            project_id,
            imported,
            kept,
            serving.version,
            walked.fetched,
            masked,
            removed,
            len(errors),
            ordered_after,
        )
        return RescoreReport(
            project=project_id,
            model_version=serving.version,
            tasks=walked.seen,
            predictions=imported,
            labelled=len(labelled & set(features)),
            fetched=walked.fetched,
            removed=removed,
            kept=kept,
            errors=errors,
            masked_in_order=masked,
            ordered_after_s=round(ordered_after, 1),
        )

    def _order(
        self,
        project_id: int,
        serving: Serving,
        store: PoolStore,
        errors: dict[int, str],
        marker: tuple[str, str, str],
    ) -> None:
        """Order the project's queue by this version's predictions (its first page is in:
        Label Studio serves those tasks first while the rest are still masked). The marker
        comes first: the /setup that the queue's new model version makes Label Studio call
        finds the project scored, and queues no second scoring."""
        store.save_skipped(errors)  # before ordering the queue, which may watch for seconds
        store.save_scored(marker)
        self.order_queue(project_id, version_label(serving.version))

    def _mask_deferred(
        self,
        serving: Serving,
        project_id: int,
        page: list[int],
        walked: Walked,
        target: BrushTarget,
    ) -> int:
        """Fetch and mask the tasks of `page` that the walk deferred, a batch of images at a
        time; a task whose image fails gets its reason in `walked.errors`. Returns how many
        were masked."""
        todo = [walked.deferred.pop(t) for t in page if t in walked.deferred]
        masked = 0
        for first in range(0, len(todo), self.settings.batch_size):
            batch: list[tuple[int, bytes, bool]] = []
            for task in todo[first : first + self.settings.batch_size]:
                try:
                    batch.append((task["id"], self.fetch_image(task, target), True))
                    walked.fetched += 1
                except TaskImageError as exc:
                    walked.errors[task["id"]] = str(exc)
            for tid, result in self.analyse(serving, batch, walked.errors, project_id).items():
                if result.sha != walked.index[tid]["sha"]:
                    log.warning(
                        "project %s task %s: image changed under its URL; masked anew, "
                        "scored with its old features until the next scoring",
                        project_id,
                        tid,
                    )
                    walked.index[tid] = {**walked.index[tid], "sha": result.sha}
                masked += 1
        return masked

    def _import(
        self, project_id: int, batch: list[dict[str, Any]], errors: dict[int, str]
    ) -> list[int]:
        """Import a batch; when Label Studio refuses it (e.g. a task deleted meanwhile),
        one by one, so only the refused task fails (an unreachable or failing Label Studio
        fails the job). Returns the imported task ids."""
        try:
            self.client.import_predictions(project_id, batch)
            return [p["task"] for p in batch]
        except LabelStudioError as exc:
            if len(batch) == 1 and not _refused(exc):
                raise
            if len(batch) == 1:
                errors[batch[0]["task"]] = f"prediction not imported: {exc}"[:300]
                return []
        done = []
        for prediction in batch:
            try:
                self.client.import_predictions(project_id, [prediction])
                done.append(prediction["task"])
            except LabelStudioError as exc:
                errors[prediction["task"]] = f"prediction not imported: {exc}"[:300]
        return done

    def _fit_and_score(
        self,
        serving: Serving,
        store: PoolStore,
        features: dict[int, np.ndarray],
        labelled: set[int],
        errors: dict[int, str],
        settings: Settings,
    ) -> dict[int, float]:
        """Fit on P u S, store the fit, and return each unlabelled task's score in the
        order of the project's strategy (selection/queue_order.py)."""
        p_rows = [features[t] for t in features if t in labelled]
        s_ids = [t for t in features if t not in labelled]
        primary = _stack(serving.base_features, p_rows)
        if not s_ids:
            return {}
        if not len(primary):
            errors.update({t: "no training images to compare with" for t in s_ids})
            return {}
        pool = np.stack([features[t] for t in s_ids])
        fit, i_dist = DistanceFit.fit(primary, pool, self.settings.components)
        store.save_fit(serving.fit_key, fit)
        scaled = fit.scaled_at_fit(i_dist)
        store.save_distances(serving.version, dict(zip(s_ids, scaled, strict=True)))
        labelled_ids = [t for t in features if t in labelled]
        self._draw_map(serving, store.project, fit, labelled_ids, s_ids, pool, scaled)
        scores = queue_scores(
            settings.strategy,
            primary,
            pool,
            scaled,
            settings.band,
            settings.components,
            seed=zlib.crc32(f"{store.folder.name}:{serving.version}".encode()),
            curve=self.expected_f(store.project)
            if settings.strategy is Strategy.FARTHEST
            else None,
        )
        return {t: float(x) for t, x in zip(s_ids, scores, strict=True)}

    def _draw_map(
        self,
        serving: Serving,
        project_id: int,
        fit: DistanceFit,
        labelled_ids: list[int],
        s_ids: list[int],
        pool: np.ndarray,
        scaled: np.ndarray,
    ) -> None:
        """Draw and keep the project's map (backend/project_map.py), unless the kept one
        shows this very pool (same version, P, tasks and distances: t-SNE is the costly
        part of a warm scoring); a failure costs only the map, never the scoring."""
        base = list(serving.base_names)
        if len(base) != len(serving.base_features):
            base = [f"base image {i}" for i in range(len(serving.base_features))]
        names = base + [f"{LABELLED}{t}" for t in labelled_ids]
        kept = ProjectMap.load(self.settings.registry, project_id)
        if kept is not None and kept.shows(serving.version, names, s_ids, scaled):
            return
        try:
            ProjectMap.draw(serving.version, fit, names, s_ids, pool, scaled).save(
                self.settings.registry, project_id
            )
        except Exception as exc:
            log.warning("project %s: pool map not drawn: %s", project_id, exc)

    def order_queue(self, project_id: int, model_version: str, settle: float = 5.0) -> None:
        """Serve in the scores' order: uncertainty sampling over predictions of `model_version`.

        Connecting a backend, Label Studio sets the project's model_version to the backend's
        title when it had none, from a copy of the project read before it called /setup
        (`ml/api.py`, `perform_create`): a first scoring that ends meanwhile (a small or
        cached project) is overwritten just after. So when the project showed no version of
        ours, watch it for `settle` seconds and set it again if it changed."""
        fields: dict[str, Any] = {"model_version": model_version}
        if self.settings.order_queue:
            fields["sampling"] = SAMPLING
        fresh = labelled_version(self.client.project(project_id).get("model_version")) is None
        self.client.update_project(project_id, **fields)
        deadline = time.monotonic() + (settle if fresh else 0.0)
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if self.client.project(project_id).get("model_version") != model_version:
                log.info("project %s: model_version overwritten: set again", project_id)
                self.client.update_project(project_id, **fields)

    # -- the /predict request ---------------------------------------------------------------
    def predict(
        self, tasks: list[dict[str, Any]], label_config: str, project: Any
    ) -> list[list[dict[str, Any]]]:
        """One list per task: its prediction, or empty with the reason logged. Scores use
        the project's stored fit; without one, the tasks of this call are the pool."""
        label = self.project_settings(project).crack_label  # the defaults without a project
        target = parse_brush_target(label_config, label or None)
        project_id = _project_or_none(project)
        serving = self.holder.current(project_id)
        errors: dict[int, str] = {}
        batch = []
        for task in tasks:
            try:
                batch.append((task["id"], self.fetch_image(task, target), True))
            except TaskImageError as exc:
                errors[task["id"]] = str(exc)
        analysed = self.analyse(serving, batch, errors, project_id)
        scores = self._call_scores(serving, tasks, analysed, project, errors)
        out = []
        for task in tasks:
            tid = task["id"]
            if tid in analysed and tid in scores:
                pred = _prediction(tid, serving.version, scores[tid], analysed[tid].mask, target)
                out.append([{k: pred[k] for k in ("model_version", "score", "result")}])
            else:
                log.warning("task %s: no prediction: %s", tid, errors.get(tid, "unknown reason"))
                out.append([])
        return out

    def _call_scores(
        self,
        serving: Serving,
        tasks: list[dict[str, Any]],
        analysed: dict[int, Analysed],
        project: Any,
        errors: dict[int, str],
    ) -> dict[int, float]:
        labelled = {t["id"] for t in tasks if is_labelled(t)} & set(analysed)
        s_ids = [t["id"] for t in tasks if t["id"] in analysed and t["id"] not in labelled]
        scores = dict.fromkeys(labelled, 1.0)
        if not s_ids:
            return scores
        s_rows = np.stack([analysed[t].features for t in s_ids])
        fit = None
        if project is not None:
            try:
                fit = PoolStore(self.settings.registry, project_id_of(project)).load_fit(
                    serving.fit_key
                )
            except ValueError:
                fit = None
        if fit is not None and fit.mean.shape[0] == s_rows.shape[1]:
            scaled = fit.scaled(fit.i_dist(s_rows))
        else:  # no scoring job has run yet for this project and version: this call's pool
            primary = _stack(serving.base_features, [analysed[t].features for t in labelled])
            if not len(primary):
                errors.update({t: "no training images to compare with" for t in s_ids})
                return scores
            fit, i_dist = DistanceFit.fit(primary, s_rows, self.settings.components)
            scaled = fit.scaled_at_fit(i_dist)
        curve = self._farthest_curve(project)
        values = 1.0 - scaled if curve is None else curve.queue_scores(scaled)
        scores.update({t: float(x) for t, x in zip(s_ids, values, strict=True)})
        return scores

    def _farthest_curve(self, project: Any) -> ExpectedF | None:
        """The project's curve when its queue is farthest-first (else None)."""
        try:
            project_id = project_id_of(project)
        except ValueError:
            return None
        if self.project_settings(project_id).strategy is not Strategy.FARTHEST:
            return None
        return self.expected_f(project_id)

    def expected_f(self, project_id: int) -> ExpectedF | None:
        """The project's curve of pre-annotation F against distance, from its labels;
        refitted only when its edit log changed."""
        edits = EditLog(self.settings.registry, project_id)
        try:
            stamp = edits.stamp()
            kept = self._curves.get(project_id)
            if kept is not None and kept[0] == stamp:
                return kept[1]
            curve = ExpectedF.from_labels((r.scaled_distance, r.pixel_f) for r in edits.read())
        except Exception as exc:  # a damaged record costs the curve, never the scoring
            log.warning("project %s: expected-F curve not fitted: %s", project_id, exc)
            return None
        self._curves[project_id] = (stamp, curve)
        return curve


def _created(project: dict[str, Any]) -> str:
    return str(project.get("created_at") or "")


def _remember(put: Any, *args: Any) -> None:
    """A cache write that may fail (a full disk) without failing the request."""
    try:
        put(*args)
    except OSError as exc:
        log.warning("cache write failed (%s): serving without caching", exc)


def _pages(
    queue: list[int], deferred: dict[int, Any], front: int, page_size: int
) -> Iterator[list[int]]:
    """The queue in pages: `front` tasks first, then `page_size`, but `front` again for a
    page with tasks still to mask, so masked tasks join Label Studio's queue a few at a
    time. No task: one empty page (the queue is ordered all the same)."""
    if front < 1 or page_size < 1:
        raise ValueError(f"pages need at least one task: front {front}, page_size {page_size}")
    start, size = 0, front
    while True:
        yield queue[start : start + size]
        start += size
        if start >= len(queue):
            return
        ahead = queue[start : start + page_size]
        size = front if any(t in deferred for t in ahead) else page_size


def _refused(exc: LabelStudioError) -> bool:
    """Label Studio answered and refused this request (a 4xx other than for credentials or
    rate), as opposed to failing, refusing us or not answering."""
    return exc.status is not None and 400 <= exc.status < 500 and exc.status not in (401, 403, 429)


def _project_or_none(project: Any) -> int | None:
    try:
        return project_id_of(project)
    except ValueError:
        return None


def _stack(base: np.ndarray, rows: Iterable[np.ndarray]) -> np.ndarray:
    rows = list(rows)
    parts = ([base] if base.size else []) + ([np.stack(rows)] if rows else [])
    return np.vstack(parts) if parts else np.zeros((0, 0))


def _prediction(
    tid: int,
    version: str,
    score: float,
    mask: tuple[list[int], tuple[int, int]],
    target: BrushTarget,
) -> dict[str, Any]:
    rle, shape = mask
    return {
        "task": tid,
        "model_version": version_label(version),
        "score": score,
        "result": [rle_result(rle, shape, target)],
    }


def _our_predictions(task: dict[str, Any]) -> list[int]:
    """Ids of the task's predictions that crackal made (any of its versions)."""
    preds = task.get("predictions")
    if not isinstance(preds, list):
        return []
    return [
        p["id"]
        for p in preds
        if isinstance(p, dict)
        and isinstance(p.get("id"), int)
        and labelled_version(p.get("model_version")) is not None
    ]


def shown_key(model_version: str, score: float, result: dict[str, Any]) -> str:
    """What a prediction shows: its version label, score (to 1e-9), and its brush result
    (control names, type, label, image size, mask)."""
    value = result["value"]
    mask = hashlib.sha1(np.asarray(value["rle"], dtype=np.uint8).tobytes()).hexdigest()
    shown = [
        result["from_name"],
        result["to_name"],
        result["type"],
        int(result["original_width"]),
        int(result["original_height"]),
        value.get("format"),
        value.get("brushlabels"),
        mask,
    ]
    return f"{model_version}|{score:.9f}|{json.dumps(shown)}"


def shown_of(task: dict[str, Any]) -> str | None:
    """`shown_key` of the task's crackal prediction when it has exactly one (several: an
    earlier removal failed, so a new import replaces them all)."""
    ours = [
        p
        for p in task.get("predictions") or []
        if isinstance(p, dict) and labelled_version(p.get("model_version")) is not None
    ]
    if len(ours) != 1:
        return None
    try:
        result = ours[0]["result"]
        if not isinstance(result, list) or len(result) != 1:
            return None
        return shown_key(ours[0]["model_version"], float(ours[0]["score"]), result[0])
    except (KeyError, IndexError, TypeError, ValueError, OverflowError, AttributeError):
        return None  # not what we import: replace it


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc or exc.__class__.__name__)[:300]
