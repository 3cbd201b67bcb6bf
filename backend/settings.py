"""Backend configuration, read once from the environment (every variable documented in
README.md, section "Configuration")."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from selection.cache import default_cache_dir
from selection.ranking import DEFAULT_BAND


def _band(text: str) -> tuple[float, float]:
    lo, hi = (float(x) for x in text.split(","))
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
    band: tuple[float, float] = DEFAULT_BAND
    batch_size: int = 16
    order_queue: bool = True  # set "Uncertainty sampling" so /next serves farthest first
    local_files_root: Path | None = None  # local paths allowed only below this folder
    max_image_bytes: int = 64 * 2**20
    max_image_pixels: int = 64_000_000
    basic_auth_user: str = ""
    basic_auth_password: str = ""
    request_timeout: float = 30.0
    retrain_threshold: int = 3  # new or changed labels that start a retraining job
    promote: str = "if-better"  # always | if-better | never
    adapt_steps: int = 300
    job_retries: int = 2  # a failed job is retried this many times, with backoff
    redis_url: str = ""  # set: jobs go to rq workers; unset: a thread of the backend runs them

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        s = cls()
        s.label_studio_url = e.get("LABEL_STUDIO_URL", s.label_studio_url).rstrip("/")
        s.label_studio_api_key = e.get("LABEL_STUDIO_API_KEY", "")
        s.registry = Path(e.get("CRACKAL_REGISTRY", str(s.registry)))
        if e.get("CRACKAL_BASE_TRAIN"):
            s.base_train = Path(e["CRACKAL_BASE_TRAIN"])
        if e.get("CRACKAL_BASE_VAL"):
            s.base_val = Path(e["CRACKAL_BASE_VAL"])
        if e.get("CRACKAL_CACHE"):
            s.cache = Path(e["CRACKAL_CACHE"])
        s.features = e.get("CRACKAL_FEATURES", s.features)
        if s.features not in ("model", "imagenet"):
            raise ValueError(f"CRACKAL_FEATURES must be model or imagenet, got {s.features!r}")
        s.feature_size = int(e.get("CRACKAL_FEATURE_SIZE", s.feature_size))
        s.components = int(e.get("CRACKAL_COMPONENTS", s.components))
        if e.get("CRACKAL_BAND"):
            s.band = _band(e["CRACKAL_BAND"])
        s.batch_size = int(e.get("CRACKAL_BATCH_SIZE", s.batch_size))
        s.order_queue = e.get("CRACKAL_ORDER_QUEUE", "1").lower() not in ("0", "false", "no")
        if e.get("CRACKAL_LOCAL_FILES_ROOT"):
            s.local_files_root = Path(e["CRACKAL_LOCAL_FILES_ROOT"]).resolve()
        s.max_image_bytes = int(e.get("CRACKAL_MAX_IMAGE_BYTES", s.max_image_bytes))
        s.max_image_pixels = int(e.get("CRACKAL_MAX_IMAGE_PIXELS", s.max_image_pixels))
        s.basic_auth_user = e.get("BASIC_AUTH_USER", "")
        s.basic_auth_password = e.get("BASIC_AUTH_PASS", "")
        s.retrain_threshold = int(e.get("CRACKAL_RETRAIN_THRESHOLD", s.retrain_threshold))
        s.promote = e.get("CRACKAL_PROMOTE", s.promote)
        if s.promote not in ("always", "if-better", "never"):
            raise ValueError(f"CRACKAL_PROMOTE must be always, if-better or never: {s.promote!r}")
        s.adapt_steps = int(e.get("CRACKAL_ADAPT_STEPS", s.adapt_steps))
        s.job_retries = int(e.get("CRACKAL_JOB_RETRIES", s.job_retries))
        s.redis_url = e.get("REDIS_URL", "")
        return s
