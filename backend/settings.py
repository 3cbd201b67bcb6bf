"""Backend configuration, read once from the environment (every variable documented in
README.md, section "Configuration")."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selection.cache import default_cache_dir
from selection.queue_order import QUEUE_STRATEGIES
from selection.ranking import DEFAULT_BAND
from selection.strategies import Strategy
from training.device import resolve_device
from training.fit import Promotion
from training.train import Adaptation, TrainConfig


def _number(env: Mapping[str, str], name: str, default: Any, kind: type) -> Any:
    """`env[name]` as `kind` (int or float), else `default`; a bad value is refused by name."""
    raw = env.get(name)
    if raw is None:
        return default
    try:
        return kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"{name} must be {what}: {raw!r}") from None


def _band(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"CRACKAL_BAND must be 'low,high', e.g. 0.6,1: {text!r}") from None
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"CRACKAL_BAND needs 0 <= low < high <= 1: {text!r}")
    return lo, hi


@dataclass
class Settings:
    label_studio_url: str = "http://127.0.0.1:8080"
    label_studio_api_key: str = ""
    registry: Path = Path("registry")
    base_train: Path | None = None  # the base training set P (images/ + masks/)
    base_val: Path | None = None  # its validation set (retraining: early stop, threshold)
    cache: Path = field(default_factory=default_cache_dir)
    features: str = "model"  # "model": current version's encoder; "imagenet"
    feature_size: int = 448
    components: int = 25
    band: tuple[float, float] = DEFAULT_BAND  # used by the band and band-kcenter orders
    strategy: Strategy = Strategy.KCENTER  # the queue's order (README: `crackal simulate`)
    batch_size: int = 16
    onnx: bool = True  # masks run on onnxruntime (each version exported once); torch if off
    order_queue: bool = True  # "Uncertainty sampling": /next serves the lowest score first
    local_files_root: Path | None = None  # local paths allowed only below this folder
    max_image_bytes: int = 64 * 2**20
    max_image_pixels: int = 64_000_000
    basic_auth_user: str = ""
    basic_auth_password: str = ""
    insecure: bool = False  # serve without authentication (a trusted network only)
    max_request_bytes: int = 64 * 2**20  # larger request bodies are refused (413)
    request_timeout: float = 30.0  # per connection attempt and per read
    fetch_deadline: float = 120.0  # a whole image download, redirects included
    allowed_hosts: tuple[str, ...] = ()  # private hosts or networks images may come from
    retrain_threshold: int = 3  # new or changed labels that start a retraining job
    idle_delay: float = 600.0  # fewer labels train once no label came for this many seconds
    keep_versions: int = 20  # older versions are deleted, except any project's current one
    promote: Promotion = Promotion.IF_BETTER
    # a retrain's preset; None (auto): thorough on CUDA, quick on a CPU
    adaptation: Adaptation | None = None
    adapt_steps: int | None = None  # the preset's steps unless set
    # True: a retrain adapts the decoder only, so the parent's encoder and its features stay
    # (README: "Adapting: which layers, which rates"); False: every layer; None: the preset's
    adapt_frozen_encoder: bool | None = None
    # after a quick retrain, once labelling pauses (idle_delay): a thorough pass on its labels
    thorough_when_idle: bool = True
    thorough_minutes: float = 15.0  # a thorough pass's wall-clock budget
    # weight of the skeleton recall term in a retrain's loss (thin cracks; 0: BCE + Dice)
    skeleton_recall: float = 1.0
    job_retries: int = 2  # a failed job is retried this many times, with backoff
    job_timeout: int = 3600  # seconds a job may run
    redis_url: str = ""  # set: jobs go to rq workers; unset: a thread of the backend runs them
    shard_tasks: int = 500  # on rq, larger projects are scored in pages of this many tasks
    shard_helpers: int = 8  # at most this many helper jobs per scoring job
    crack_label: str = ""  # the label that marks cracks (else: the only one, or "crack...")
    log_level: str = "INFO"
    workers: int = 1  # HTTP worker processes; more than one needs REDIS_URL
    threads: int = 4  # request threads per worker

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        s = cls()
        # upstream ML backends' names are aliases: LABEL_STUDIO_HOST, MODEL_DIR
        url = e.get("LABEL_STUDIO_URL") or e.get("LABEL_STUDIO_HOST") or s.label_studio_url
        s.label_studio_url = url.rstrip("/")
        s.label_studio_api_key = e.get("LABEL_STUDIO_API_KEY", "")
        s.registry = Path(e.get("CRACKAL_REGISTRY") or e.get("MODEL_DIR") or str(s.registry))
        if e.get("CRACKAL_BASE_TRAIN"):
            s.base_train = Path(e["CRACKAL_BASE_TRAIN"])
        if e.get("CRACKAL_BASE_VAL"):
            s.base_val = Path(e["CRACKAL_BASE_VAL"])
        if e.get("CRACKAL_CACHE"):
            s.cache = Path(e["CRACKAL_CACHE"])
        s.features = e.get("CRACKAL_FEATURES", s.features)
        if s.features not in ("model", "imagenet"):
            raise ValueError(f"CRACKAL_FEATURES must be model or imagenet, got {s.features!r}")
        s.feature_size = _number(e, "CRACKAL_FEATURE_SIZE", s.feature_size, int)
        s.components = _number(e, "CRACKAL_COMPONENTS", s.components, int)
        if e.get("CRACKAL_BAND"):
            s.band = _band(e["CRACKAL_BAND"])
        name = e.get("CRACKAL_STRATEGY", s.strategy.value)
        if name not in {q.value for q in QUEUE_STRATEGIES}:
            choices = ", ".join(q.value for q in QUEUE_STRATEGIES)
            raise ValueError(f"CRACKAL_STRATEGY must be one of {choices}: {name!r}")
        s.strategy = Strategy(name)
        s.batch_size = _number(e, "CRACKAL_BATCH_SIZE", s.batch_size, int)
        resolve_device(e.get("CRACKAL_DEVICE") or "auto")  # a wrong device fails at start
        s.onnx = e.get("CRACKAL_ONNX", "1").lower() not in ("0", "false", "no")
        s.order_queue = e.get("CRACKAL_ORDER_QUEUE", "1").lower() not in ("0", "false", "no")
        if e.get("CRACKAL_LOCAL_FILES_ROOT"):
            s.local_files_root = Path(e["CRACKAL_LOCAL_FILES_ROOT"]).resolve()
        s.max_image_bytes = _number(e, "CRACKAL_MAX_IMAGE_BYTES", s.max_image_bytes, int)
        s.max_image_pixels = _number(e, "CRACKAL_MAX_IMAGE_PIXELS", s.max_image_pixels, int)
        s.fetch_deadline = _number(e, "CRACKAL_FETCH_DEADLINE", s.fetch_deadline, float)
        s.allowed_hosts = tuple(
            h.strip().lower() for h in e.get("CRACKAL_ALLOWED_HOSTS", "").split(",") if h.strip()
        )
        s.basic_auth_user = e.get("BASIC_AUTH_USER", "")
        s.basic_auth_password = e.get("BASIC_AUTH_PASS", "")
        if ("BASIC_AUTH_USER" in e) != ("BASIC_AUTH_PASS" in e) or (
            "BASIC_AUTH_USER" in e and not (s.basic_auth_user and s.basic_auth_password)
        ):
            raise ValueError("set both BASIC_AUTH_USER and BASIC_AUTH_PASS, neither of them empty")
        s.insecure = e.get("CRACKAL_INSECURE", "0").lower() in ("1", "true", "yes")
        s.max_request_bytes = _number(e, "CRACKAL_MAX_REQUEST_BYTES", s.max_request_bytes, int)
        s.retrain_threshold = _number(e, "CRACKAL_RETRAIN_THRESHOLD", s.retrain_threshold, int)
        s.idle_delay = _number(e, "CRACKAL_IDLE_DELAY", s.idle_delay, float)
        s.keep_versions = _number(e, "CRACKAL_KEEP_VERSIONS", s.keep_versions, int)
        if s.idle_delay <= 0 or s.keep_versions < 1:
            raise ValueError("CRACKAL_IDLE_DELAY must be > 0 s and CRACKAL_KEEP_VERSIONS >= 1")
        s.promote = Promotion.parse(e.get("CRACKAL_PROMOTE", s.promote), "CRACKAL_PROMOTE")
        preset = e.get("CRACKAL_ADAPTATION", "auto")
        if preset not in ("auto", *Adaptation):
            raise ValueError(f"CRACKAL_ADAPTATION must be auto, quick or thorough: {preset!r}")
        s.adaptation = None if preset == "auto" else Adaptation(preset)
        s.adapt_steps = _number(e, "CRACKAL_ADAPT_STEPS", s.adapt_steps, int)
        if s.adapt_steps is not None and s.adapt_steps < 1:
            raise ValueError(f"CRACKAL_ADAPT_STEPS must be at least 1: {s.adapt_steps}")
        encoder = e.get("CRACKAL_ADAPT_ENCODER", "")
        if encoder not in ("", "frozen", "trained"):
            raise ValueError(f"CRACKAL_ADAPT_ENCODER must be frozen or trained: {encoder!r}")
        s.adapt_frozen_encoder = None if not encoder else encoder == "frozen"
        idle = e.get("CRACKAL_THOROUGH_WHEN_IDLE", "1").lower()
        s.thorough_when_idle = idle not in ("0", "false", "no")
        s.thorough_minutes = _number(e, "CRACKAL_THOROUGH_MINUTES", s.thorough_minutes, float)
        if not 0 < s.thorough_minutes < 24 * 60:  # NaN too
            raise ValueError(
                f"CRACKAL_THOROUGH_MINUTES must be > 0 and < 1440: {s.thorough_minutes}"
            )
        s.skeleton_recall = _number(e, "CRACKAL_SKELETON_RECALL", s.skeleton_recall, float)
        try:  # the training settings' own rule, refused at start (NaN too)
            TrainConfig(skeleton_recall=s.skeleton_recall)
        except ValueError as exc:
            raise ValueError(f"CRACKAL_SKELETON_RECALL: {exc}") from None
        s.job_retries = _number(e, "CRACKAL_JOB_RETRIES", s.job_retries, int)
        s.job_timeout = _number(e, "CRACKAL_JOB_TIMEOUT", s.job_timeout, int)
        if s.job_timeout < 1:
            raise ValueError(f"CRACKAL_JOB_TIMEOUT must be at least 1 s: {s.job_timeout}")
        thorough_possible = s.thorough_when_idle or s.adaptation is not Adaptation.QUICK
        if thorough_possible and s.thorough_minutes * 60 > s.job_timeout / 2:  # + re-score
            raise ValueError(
                f"CRACKAL_THOROUGH_MINUTES ({s.thorough_minutes}) must be at most half of "
                f"CRACKAL_JOB_TIMEOUT ({s.job_timeout} s) in minutes"
            )
        s.redis_url = e.get("REDIS_URL", "")
        s.shard_tasks = _number(e, "CRACKAL_SHARD_TASKS", s.shard_tasks, int)
        s.shard_helpers = _number(e, "CRACKAL_SHARD_HELPERS", s.shard_helpers, int)
        if s.shard_helpers < 0:
            raise ValueError(f"CRACKAL_SHARD_HELPERS must be >= 0: {s.shard_helpers}")
        s.crack_label = e.get("CRACKAL_LABEL", "")
        s.log_level = e.get("LOG_LEVEL", s.log_level).upper()
        if s.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR: {s.log_level!r}")
        s.workers = _number(e, "WORKERS", s.workers, int)
        s.threads = _number(e, "THREADS", s.threads, int)
        if s.workers < 1 or s.threads < 1:
            raise ValueError("WORKERS and THREADS must be at least 1")
        if s.workers > 1 and not s.redis_url:
            raise ValueError(
                "WORKERS > 1 needs REDIS_URL: without Redis the jobs run inside the one worker"
            )
        return s
