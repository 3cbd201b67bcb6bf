"""The Label Studio ML backend HTTP API: /health, /setup, /predict, /webhook, /train, and
the project dashboard (/dashboard, /dashboard/data, /dashboard/task).

Label Studio calls /setup often and expects an answer within seconds, and gives webhooks
one second: both only read small files and enqueue work. Labels below the retrain
threshold train once no label came for CRACKAL_IDLE_DELAY seconds (a ticker thread takes
due projects: an `idle` job, which trains if any label changed since the last retrain,
and after a quick retrain trains a thorough candidate on the same labels).
When the webhooks counted the threshold of label events, and at start and at a project's
first /setup in this process, a reconcile job trains if at least the threshold of labels
changed since the last retrain (counted in Label Studio, so no label is trained twice);
at start the idle deadline is armed for fewer. Every handler turns bad input
into a 4xx JSON error and any failure into a 5xx JSON error; the server keeps running.

Every route needs HTTP basic auth (BASIC_AUTH_USER / BASIC_AUTH_PASS) unless the backend
was started insecure on purpose; without credentials `/health` only says it is up.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import threading
import time
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import BadRequest

from backend.dashboard import dashboard_data
from backend.dashboard_page import render_page, render_task_page
from backend.job_functions import thorough_follows
from backend.job_kind import JobKind
from backend.label_config import LabelConfigError, parse_brush_target
from backend.pool_store import PoolStore
from backend.prediction_label import version_label
from backend.project_options import ProjectOptions, load_options, save_options
from backend.project_view import all_projects, known_projects
from backend.queues import JobQueue, make_queue
from backend.service import Service, project_id_of
from backend.settings import Settings
from backend.task_view import TaskViewError, task_view
from training.registry import Registry, RegistryError

log = logging.getLogger("crackal.backend")

RESCORE_EVENTS = {"TASKS_CREATED", "TASKS_DELETED"}
LABEL_EVENTS = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED"}


def create_app(
    settings: Settings | None = None,
    service: Service | None = None,
    queue: JobQueue | None = None,
) -> Flask:
    settings = settings or Settings.from_env()
    if not settings.basic_auth_user and not settings.insecure:
        raise ValueError(
            "no authentication configured: set BASIC_AUTH_USER and BASIC_AUTH_PASS (and the "
            "same in Label Studio's model settings), or start with --insecure "
            "(CRACKAL_INSECURE=1) on a network you trust"
        )
    service = service or Service(settings)
    queue = queue or make_queue(service)
    registry = Registry(settings.registry)
    # project -> (model version, options key) it was scored with, or a scoring was queued for
    scored: dict[int, tuple[str, str]] = {}
    authorised: set[int] = set()  # projects whose webhook carries our credentials
    reconciled: set[int] = set()  # projects whose labels were checked by this process
    app = Flask("crackal")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.config["crackal.queue"] = queue
    app.config["crackal.service"] = service

    def wanted(project: int) -> tuple[str, str]:
        """What a scoring of the project would use now: its version and its options."""
        options = load_options(settings.registry, project)
        return registry.current(project) or "", options.key(settings)

    def scored_elsewhere(project: int, now: tuple[str, str]) -> bool:
        """A scoring (in any process: a retrain's own) ordered the queue with this version
        and these options on this very Label Studio project (if it stopped before its last
        page, the project's next job scores the rest)."""
        marker = PoolStore(settings.registry, project).load_scored()
        if marker is None or marker[:2] != now:
            return False
        try:
            return marker[2] == service.project_created(project)
        except Exception as exc:  # Label Studio unreachable: score again to be sure
            log.warning("project %s: not known to be scored: %s", project, exc)
            return False

    def rescore(project: int, now: tuple[str, str] | None = None) -> str:
        scored[project] = now or wanted(project)
        return queue.submit(JobKind.RESCORE, project)

    def retrain(project: int) -> str:
        """'Start training': a retrain now; where a quick retrain is followed by a thorough
        pass once labelling pauses, the idle deadline armed again for it."""
        queue.reset_label_events(project)
        answer = queue.submit(JobKind.RETRAIN, project)
        if thorough_follows(settings):
            queue.arm_idle(project, time.time() + settings.idle_delay)
        return answer

    def enough_labels(project: int) -> str:
        """The threshold's job: a reconcile, which trains if, counted in Label Studio, at
        least the threshold of labels changed since the last retrain (labels another job
        already trained on are not trained again). Events on fewer labels (one task edited
        thrice) leave the idle deadline armed: those labels train once labelling pauses."""
        queue.reset_label_events(project)
        answer = queue.submit(JobKind.RECONCILE, project)
        queue.arm_idle(project, time.time() + settings.idle_delay)
        return answer

    def reconcile(project: int) -> None:
        """Once per process: queue a job that trains when enough labels arrived unseen, and
        arm the idle deadline, which trains on fewer (webhooks lost while Redis was down)."""
        if project in reconciled:
            return
        try:
            queue.submit(JobKind.RECONCILE, project)
            queue.arm_idle(project, time.time() + settings.idle_delay)
            reconciled.add(project)
        except Exception as exc:  # Redis down: the next /setup or restart tries again
            log.error("project %s: reconciliation not queued: %s", project, exc)

    def train_idle_projects() -> None:
        while True:
            time.sleep(min(5.0, settings.idle_delay / 4))
            try:
                due = queue.take_idle(time.time())
            except Exception as exc:  # Redis down: try again at the next tick
                log.error("idle training not checked: %s", exc)
                continue
            for project in due:
                try:
                    log.info("project %s: labels idle: retraining if any changed", project)
                    queue.submit(JobKind.IDLE, project)
                    queue.reset_label_events(project)
                except Exception as exc:  # keep the deadline: the next tick tries again
                    log.error("project %s: idle retrain not queued: %s", project, exc)
                    with contextlib.suppress(Exception):
                        queue.train_when_idle(project, time.time())

    threading.Thread(target=train_idle_projects, name="crackal-idle", daemon=True).start()
    for known in known_projects(registry):
        reconcile(known)

    def authenticated() -> bool:
        if not settings.basic_auth_user:
            return True  # insecure on purpose
        auth = request.authorization
        return (
            auth is not None
            and auth.type == "basic"
            and hmac.compare_digest(
                (auth.username or "").encode(), settings.basic_auth_user.encode()
            )
            and hmac.compare_digest(
                (auth.password or "").encode(), settings.basic_auth_password.encode()
            )
        )

    @app.before_request
    def check_auth():
        if request.path in ("/", "/health") and request.method == "GET":
            return None  # answers without details unless authenticated
        if not authenticated():
            return (
                jsonify(error="authentication required"),
                401,
                {"WWW-Authenticate": 'Basic realm="crackal"'},
            )
        return None

    @app.errorhandler(BadProjectError)
    def bad_project(exc: BadProjectError):
        return jsonify(error=str(exc)), 400

    @app.errorhandler(Exception)
    def failed(exc: Exception):
        code = getattr(exc, "code", 500)
        if not isinstance(code, int) or code < 400:
            code = 500
        if code >= 500:
            log.exception("request failed")
        return jsonify(error=f"{exc.__class__.__name__}: {exc}"), code

    @app.get("/")
    @app.get("/health")
    def health():
        if not authenticated():
            return jsonify(status="UP", model_class="crackal")
        current = registry.current()
        try:
            metrics = registry.meta(current).get("metrics") if current else None
        except RegistryError as exc:  # a damaged shared version: say so, stay up
            metrics = {"error": str(exc)}
        try:
            jobs = queue.status()
        except Exception as exc:  # the queue (Redis) is down: say so, stay up
            jobs = {"error": f"job queue unavailable: {exc.__class__.__name__}: {exc}"}
        return jsonify(
            status="UP",
            model_class="crackal",
            model_version=current,
            metrics=metrics,
            jobs=jobs,
            projects=all_projects(settings.registry),
            damaged=service.holder.problems(),
        )

    @app.post("/setup")
    def setup():
        body = _json()
        try:
            options = ProjectOptions.parse(body.get("extra_params"))
            label = options.crack_label or settings.crack_label
            parse_brush_target(body.get("schema") or "", label or None)
        except (LabelConfigError, ValueError) as exc:
            return jsonify(error=str(exc)), 400
        project = _project(body["project"]) if body.get("project") is not None else None
        if project is not None:
            save_options(settings.registry, project, options)
        version = registry.current(project)
        if version is None:
            return jsonify(
                error=f"no model in registry {settings.registry}: train one first (crackal train)"
            ), 503
        if project is not None:
            if project not in authorised and service.try_authorise_webhooks(project):
                authorised.add(project)  # the webhook appears after the first /setup
            now = (version, options.key(settings))  # as wanted(project), without reading them again
            stopped = PoolStore(settings.registry, project).stopped_half_way()
            if scored.get(project) != now and not stopped and scored_elsewhere(project, now):
                scored[project] = now
            if scored.get(project) != now or stopped:
                try:
                    rescore(project, now)
                except Exception as exc:  # Redis down: connect anyway, score later
                    scored.pop(project, None)
                    log.error("project %s: scoring not queued: %s", project, exc)
            reconcile(project)
        return jsonify(model_version=version_label(version))

    @app.post("/predict")
    def predict():
        body = _json()
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not all(isinstance(t, dict) and "id" in t for t in tasks):
            return jsonify(error="'tasks' must be a list of tasks with ids"), 400
        label_config = body.get("label_config") or ""
        try:
            results = service.predict(tasks, label_config, body.get("project"))
        except LabelConfigError as exc:
            return jsonify(error=str(exc)), 400
        except RegistryError as exc:
            return jsonify(error=str(exc)), 503
        return jsonify(results=results)

    @app.post("/webhook")
    def webhook():
        try:
            return handle_webhook()
        except (BadRequest, ValueError):
            raise
        except Exception as exc:  # e.g. Redis down: answer at once, the job is not lost
            log.error("webhook not queued: %s", exc)  # the next event or /setup reconciles
            return jsonify(status=f"not queued: {exc.__class__.__name__}: {exc}"), 200

    def handle_webhook():
        body = _json()
        action = body.get("action")
        if not action:
            return jsonify(error="webhook without 'action'"), 400
        if body.get("project") is None:
            return jsonify(action=action, status="ignored: no project")
        project = _project(body["project"])
        if action == "START_TRAINING":
            return jsonify(action=action, status=retrain(project))
        if action in LABEL_EVENTS:
            if (body.get("annotation") or {}).get("was_cancelled"):
                return jsonify(action=action, status="ignored: skipped task, not a label")
            changes = queue.count_label_event(project)
            if changes >= settings.retrain_threshold:
                return jsonify(action=action, status=enough_labels(project))
            queue.train_when_idle(project, time.time() + settings.idle_delay)
            return jsonify(
                action=action,
                status="counted",
                label_changes=changes,
                threshold=settings.retrain_threshold,
                train_when_idle_for=settings.idle_delay,
            )
        if action in RESCORE_EVENTS:
            return jsonify(action=action, status=rescore(project))
        return jsonify(action=action, status="ignored")

    @app.get("/dashboard/data")
    def dashboard_json():
        """The project's dashboard numbers (backend/dashboard.py)."""
        return jsonify(dashboard_data(settings.registry, _project(request.args.get("project"))))

    @app.get("/dashboard")
    def dashboard():
        """The project's dashboard page: curves, stop signal, versions, labels."""
        data = dashboard_data(settings.registry, _project(request.args.get("project")))
        return render_page(data), 200, {"Content-Type": "text/html; charset=utf-8"}

    @app.get("/dashboard/task")
    def dashboard_task():
        """One pool task opened from the map: image, pre-annotation, Grad-CAM, nearest
        training images (backend/task_view.py)."""
        project = _project(request.args.get("project"))
        try:
            task = int(request.args.get("task", ""))
        except ValueError:
            return jsonify(error="'task' must be a task id"), 400
        try:
            view = task_view(service, project, task)
        except TaskViewError as exc:
            return jsonify(error=str(exc)), 404
        return render_task_page(view), 200, {"Content-Type": "text/html; charset=utf-8"}

    @app.post("/train")
    def train():
        """The route older Label Studio versions call to start training: queues a retrain."""
        body = _json()
        if body.get("project") is None:
            return jsonify(error="'project' is required"), 400
        project = _project(body["project"])
        return jsonify(project=project, status=retrain(project))

    return app


class BadProjectError(ValueError):
    """A request naming a project that is not a Label Studio project id."""


def _project(value: Any) -> int:
    try:
        return project_id_of(value)
    except ValueError as exc:
        raise BadProjectError(str(exc)) from None


def _json() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body
