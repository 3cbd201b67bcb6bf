"""Background jobs in the backend process: one worker thread, at most one job per key
queued or running; a key submitted while its job runs gets exactly one follow-up run. A run
that outlasts its timeout is reported failed and its key unblocked; Python cannot stop a
thread, so the run's thread is abandoned (a daemon) and its result discarded."""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from backend.job_state import JobState, Submission

log = logging.getLogger("crackal.jobs")


@dataclass
class JobRecord:
    key: str
    state: JobState = JobState.QUEUED
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    result: Any = None
    error: str | None = None
    attempt: int = 1
    retry_in: float | None = None  # seconds until the next attempt

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state.value}


class ThreadRunner:
    """Runs submitted callables one at a time on a daemon thread. A job that raises is run
    again up to `retries` times, after `backoff` * 4**k seconds."""

    def __init__(self, retries: int = 2, backoff: float = 5.0, timeout: float = 3600.0) -> None:
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self._attempts: dict[str, int] = {}
        self._queue: queue.Queue[tuple[str, Callable[[], Any]]] = queue.Queue()
        self._lock = threading.Lock()
        self._pending: dict[str, Callable[[], Any]] = {}  # queued, not started
        self._running: str | None = None
        self._follow_up: dict[str, Callable[[], Any]] = {}
        self.last: dict[str, JobRecord] = {}
        self._thread = threading.Thread(target=self._work, name="crackal-jobs", daemon=True)
        self._thread.start()

    def submit(self, key: str, fn: Callable[[], Any]) -> Submission:
        """Queue `fn` under `key`."""
        with self._lock:
            if key in self._pending:
                return Submission.ALREADY_QUEUED
            if self._running == key:
                self._follow_up[key] = fn
                return Submission.FOLLOW_UP
            self._pending[key] = fn
            self.last[key] = JobRecord(key, attempt=self._attempts.get(key, 0) + 1)
        self._queue.put((key, fn))
        return Submission.QUEUED

    def _run_with_timeout(self, key: str, fn: Callable[[], Any]) -> Any:
        """fn() on a thread of its own; TimeoutError when it outlasts `timeout`."""
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["result"] = fn()
            except BaseException as exc:  # handed to the runner
                outcome["error"] = exc
                outcome["traceback"] = traceback.format_exc()

        thread = threading.Thread(target=target, name=f"crackal-job-{key}", daemon=True)
        thread.start()
        thread.join(self.timeout)
        if thread.is_alive():
            raise TimeoutError(f"timed out after {self.timeout:g} s (its thread is abandoned)")
        if "error" in outcome:
            log.error("job %s:\n%s", key, outcome["traceback"])
            raise outcome["error"]
        return outcome.get("result")

    def queued(self) -> list[str]:
        """The keys of the jobs submitted and not started."""
        with self._lock:
            return sorted(self._pending)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "queued": sorted(self._pending),
                "running": self._running,
                "follow_up": sorted(self._follow_up),
                "last": {k: r.as_dict() for k, r in self.last.items()},
            }

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until nothing is queued or running (for tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not (self._pending or self._running or self._follow_up or self._attempts):
                    return True
            time.sleep(0.05)
        return False

    def _work(self) -> None:
        while True:
            key, fn = self._queue.get()
            with self._lock:
                fn = self._pending.pop(key, fn)
                self._running = key
                record = self.last.setdefault(key, JobRecord(key))
                record.state, record.started = JobState.RUNNING, time.time()
            retry = None
            try:
                record.result = self._run_with_timeout(key, fn)
                record.state = JobState.FINISHED
                self._attempts.pop(key, None)
            except Exception as exc:  # a job's failure must not kill the worker
                record.state, record.error = JobState.FAILED, f"{exc.__class__.__name__}: {exc}"
                log.error("job %s failed (attempt %d): %s", key, record.attempt, record.error)
                if record.attempt <= self.retries:
                    self._attempts[key] = record.attempt
                    retry = self.backoff * 4 ** (record.attempt - 1)
                    record.state, record.retry_in = JobState.RETRYING, retry
                else:
                    self._attempts.pop(key, None)
            record.ended = time.time()
            with self._lock:
                self._running = None
                again = self._follow_up.pop(key, None)
            if again is not None:
                self.submit(key, again)
            elif retry is not None:
                timer = threading.Timer(retry, self.submit, (key, fn))
                timer.daemon = True
                timer.start()
