"""Where background jobs run: in the backend process (no REDIS_URL) or on rq workers.

Both give the same guarantees: at most one job per (kind, project) queued or running; a
submission while it runs causes exactly one follow-up run; failures are retried with
backoff and stay visible in `status()`. Label events are counted per project here too, and
so is the idle deadline after which fewer labels than the threshold train, so that several
backend processes behind one Redis share them (each deadline is taken by one process).

On rq a job whose worker dies (killed, machine lost) is found by rq itself once the worker's
heartbeats stop (90 s) at the next maintenance of any live `crackal worker`, and retried;
`job_lost` keeps this module's per-project state true meanwhile, and a job's process whose
worker died stops itself, so that the retry never runs beside it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import traceback
from typing import Any, Protocol

from backend.job_functions import run_job, worker_service
from backend.job_kind import JobKind, worth_giving_way
from backend.job_state import JobState, Submission
from backend.jobs import ThreadRunner
from backend.retrain import thorough_yielded
from backend.scoring_shards import ShardPool
from backend.service import Service

log = logging.getLogger("crackal.jobs")


class JobQueue(Protocol):
    def submit(self, kind: str, project: int) -> Submission: ...
    def status(self) -> dict[str, Any]: ...
    def count_label_event(self, project: int) -> int: ...
    def reset_label_events(self, project: int) -> None: ...
    def train_when_idle(self, project: int, at: float) -> None: ...
    def arm_idle(self, project: int, at: float) -> None: ...
    def take_idle(self, now: float) -> list[int]: ...
    def queued(self) -> list[str]: ...


def run_giving_way(
    queue: JobQueue,
    kind: str,
    project: int,
    service: Service,
    shards: ShardPool | None = None,
) -> dict[str, Any]:
    """`run_job`, its thorough pass giving way to the jobs `queue` holds (other than idle
    ones: `worth_giving_way`); a pass that gave way is tried again at the next pause."""

    def waiting() -> bool:
        return worth_giving_way(queue.queued())

    result = run_job(kind, project, service, shards, waiting)
    if thorough_yielded(result):
        queue.train_when_idle(project, time.time() + service.settings.idle_delay)
    return result


class EmbeddedQueue:
    """Jobs on a thread of this process (one machine, no Redis)."""

    def __init__(
        self, service: Service, retries: int = 2, backoff: float = 5.0, timeout: float = 3600
    ) -> None:
        self.service = service
        self.runner = ThreadRunner(retries=retries, backoff=backoff, timeout=timeout)
        self._events: dict[int, int] = {}
        self._idle: dict[int, float] = {}
        self._idle_lock = threading.Lock()

    def submit(self, kind: str, project: int) -> Submission:
        """Queue job `kind` (a JobKind value; refused when unknown) for `project`."""
        kind = JobKind.parse(kind)
        return self.runner.submit(
            f"{kind}:{project}", lambda: run_giving_way(self, kind, project, self.service)
        )

    def queued(self) -> list[str]:
        """The keys of the jobs submitted and not started."""
        return self.runner.queued()

    def status(self) -> dict[str, Any]:
        return {
            "backend": "embedded",
            **self.runner.status(),
            "label_changes": {str(k): v for k, v in self._events.items()},
            "train_when_idle": {str(k): v for k, v in self._idle.items()},
        }

    def count_label_event(self, project: int) -> int:
        self._events[project] = self._events.get(project, 0) + 1
        return self._events[project]

    def reset_label_events(self, project: int) -> None:
        self._events[project] = 0
        with self._idle_lock:
            self._idle.pop(project, None)

    def train_when_idle(self, project: int, at: float) -> None:
        with self._idle_lock:
            self._idle[project] = at

    def arm_idle(self, project: int, at: float) -> None:
        """`train_when_idle` unless the project already has a deadline."""
        with self._idle_lock:
            self._idle.setdefault(project, at)

    def take_idle(self, now: float) -> list[int]:
        with self._idle_lock:
            due = [p for p, at in self._idle.items() if at <= now]
            for p in due:
                del self._idle[p]
        return due


# Atomic submit: queue unless queued; when running, flag exactly one follow-up.
_SUBMIT = """
if redis.call('SET', KEYS[1], 'queued', 'NX', 'EX', ARGV[1]) then return 'queued' end
if redis.call('GET', KEYS[1]) == 'running' then
  redis.call('SET', KEYS[2], '1') return 'follow-up' end
return 'already queued'
"""
# Atomic finish: hand over to the follow-up (state back to queued) or clear the state.
_FINISH = """
if redis.call('DEL', KEYS[2]) == 1 then
  redis.call('SET', KEYS[1], 'queued', 'EX', ARGV[1]) return 1 end
redis.call('DEL', KEYS[1]) return 0
"""
PREFIX = "crackal"
QUEUE = "crackal"
IDLE_KEY = f"{PREFIX}:idle"  # sorted set: project -> time its labels train if none came
JOB_TIMEOUT = 3600
# A state outlives its job by this much at most: the last resort if the bookkeeping of a lost
# job (`job_lost`) never ran, e.g. no `crackal worker` was left to notice it.
STATE_TTL = JOB_TIMEOUT + 300


def state_ttl(timeout: int | None) -> int:
    """A job's state key outlives the longest run by this much at most."""
    return int(timeout or JOB_TIMEOUT) + 300


def _keys(key: str) -> list[str]:
    return [f"{PREFIX}:state:{key}", f"{PREFIX}:follow-up:{key}"]


class RedisQueue:
    """Jobs on rq workers (`crackal worker`), sharing one Redis and one registry folder."""

    def __init__(
        self,
        redis_url: str | None = None,
        retries: int = 2,
        backoff: float = 5.0,
        connection: Any = None,
        timeout: int = JOB_TIMEOUT,
    ) -> None:
        from redis import Redis
        from rq import Queue

        # Short timeouts: a webhook must be answered within Label Studio's 1 s even when
        # Redis is down (the event is then reported, and recovered by reconciliation).
        self.redis = connection or Redis.from_url(
            redis_url, socket_connect_timeout=0.3, socket_timeout=0.5
        )
        self.queue = Queue(QUEUE, connection=self.redis)
        self.retries = retries
        self.backoff = backoff
        self.timeout = int(timeout)

    def submit(self, kind: str, project: int) -> Submission:
        """Queue job `kind` (a JobKind value; refused when unknown) for `project`."""
        kind = JobKind.parse(kind)
        key = f"{kind}:{project}"
        answer = self.redis.eval(_SUBMIT, 2, *_keys(key), state_ttl(self.timeout))
        answer = Submission(answer.decode() if isinstance(answer, bytes) else answer)
        if answer is Submission.QUEUED:
            self._enqueue(kind, project)
        return answer

    def _enqueue(self, kind: JobKind, project: int) -> None:
        from rq import Callback, Retry

        retry = None
        if self.retries:
            retry = Retry(
                max=self.retries, interval=[int(self.backoff * 4**k) for k in range(self.retries)]
            )
        self.queue.enqueue(
            run_in_worker,
            kind.value,  # a plain string in the job's pickled arguments
            project,
            self.retries,
            self.backoff,
            retry=retry,
            on_failure=Callback(on_job_failure),
            job_timeout=self.timeout,  # rq stops the job's process there
            result_ttl=86400,
            failure_ttl=86400,
        )

    def _states(self) -> dict[str, str]:
        """Job key -> its state, for every submitted job not yet ended."""
        states = {}
        for name in self.redis.scan_iter(f"{PREFIX}:state:*"):
            name = name.decode()
            states[name.split(":", 2)[2]] = (self.redis.get(name) or b"").decode()
        return states

    def queued(self) -> list[str]:
        """The keys of the jobs submitted and not started."""
        return sorted(k for k, v in self._states().items() if v == JobState.QUEUED)

    def status(self) -> dict[str, Any]:
        states = self._states()
        last = {}
        for name in self.redis.scan_iter(f"{PREFIX}:last:*"):
            raw = self.redis.get(name)
            if raw:
                last[name.decode().split(":", 2)[2]] = json.loads(raw)
        events = {}
        for name in self.redis.scan_iter(f"{PREFIX}:label-events:*"):
            events[name.decode().rsplit(":", 1)[1]] = int(self.redis.get(name) or 0)
        return {
            "backend": "rq",
            "queued": sorted(k for k, v in states.items() if v == JobState.QUEUED),
            "running": sorted(k for k, v in states.items() if v == JobState.RUNNING),
            "queue_length": len(self.queue),
            "last": last,
            "label_changes": events,
            "train_when_idle": {
                m.decode(): at for m, at in self.redis.zrange(IDLE_KEY, 0, -1, withscores=True)
            },
        }

    def count_label_event(self, project: int) -> int:
        return int(self.redis.incr(f"{PREFIX}:label-events:{project}"))

    def reset_label_events(self, project: int) -> None:
        self.redis.delete(f"{PREFIX}:label-events:{project}")
        self.redis.zrem(IDLE_KEY, project)

    def train_when_idle(self, project: int, at: float) -> None:
        self.redis.zadd(IDLE_KEY, {str(project): at})

    def arm_idle(self, project: int, at: float) -> None:
        """`train_when_idle` unless the project already has a deadline."""
        self.redis.zadd(IDLE_KEY, {str(project): at}, nx=True)

    def take_idle(self, now: float) -> list[int]:
        due = []
        for member in self.redis.zrangebyscore(IDLE_KEY, 0, now):
            if self.redis.zrem(IDLE_KEY, member):  # only one process takes it
                due.append(int(member))
        return due


def run_in_worker(
    kind: str, project: int, retries: int = 2, backoff: float = 5.0, service: Service | None = None
) -> dict[str, Any]:
    """The rq job: run `kind` for `project`, record the outcome, hand over to a follow-up."""
    from rq import get_current_job

    job = get_current_job()
    redis = job.connection
    key = f"{kind}:{project}"
    state = _keys(key)[0]
    ttl = state_ttl(job.timeout)
    redis.set(state, "running", ex=ttl)
    record = {
        "key": key,
        "state": JobState.RUNNING.value,
        "started": time.time(),
        "job": job.id,
        "attempt": retries - (job.retries_left or 0) + 1 if job.retries_left is not None else 1,
        "worker": job.worker_name,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    redis.set(f"{PREFIX}:last:{key}", json.dumps(record))
    if os.environ.get("RQ_JOB_ID") == job.id:  # in the process rq forked for this job
        threading.Thread(target=_stop_when_orphaned, args=(os.getppid(),), daemon=True).start()
    try:
        shards = ShardPool(redis, job.origin, job.timeout or JOB_TIMEOUT)
        service = service or worker_service()
        queue = RedisQueue(connection=redis)  # submitted jobs only: shard helpers have no key
        record["result"] = run_giving_way(queue, kind, project, service, shards)
        record["state"] = JobState.FINISHED.value
    except Exception as exc:
        record["error"] = f"{exc.__class__.__name__}: {exc}"
        record["traceback"] = traceback.format_exc()[-4000:]
        if job.retries_left:
            record["state"] = JobState.RETRYING.value
            redis.set(state, JobState.QUEUED.value, ex=ttl)  # rq re-enqueues this job itself
            raise
        record["state"] = JobState.FAILED.value
        raise
    finally:
        record["ended"] = time.time()
        redis.set(f"{PREFIX}:last:{key}", json.dumps(record, default=str))
        if JobState(record["state"]).ended:
            _finish(redis, kind, project, retries, backoff, job.timeout)
    return record["result"]


def _stop_when_orphaned(worker_pid: int) -> None:
    """End this job's process once its worker has died: rq will find the job abandoned and
    retry it, and two runs of one job must not race each other."""
    while os.getppid() == worker_pid:
        time.sleep(1)
    log.error("worker process %s died: stopping this job, rq retries it", worker_pid)
    os._exit(1)


def _finish(
    redis: Any, kind: str, project: int, retries: int, backoff: float, timeout: int | None
) -> None:
    """Unblock the project, or queue its one follow-up when events came during the run."""
    if redis.eval(_FINISH, 2, *_keys(f"{kind}:{project}"), state_ttl(timeout)):
        queue = RedisQueue(
            connection=redis, retries=retries, backoff=backoff, timeout=timeout or JOB_TIMEOUT
        )
        queue._enqueue(JobKind(kind), project)  # only a submitted (known) kind has one


def on_job_failure(job: Any, connection: Any, exc_type: type, exc: Any, tb: Any) -> None:
    """rq's failure callback. A job that raised was recorded by `run_in_worker`; a job that
    rq found abandoned (its worker stopped heartbeating) is recorded here."""
    from rq.exceptions import AbandonedJobError

    if isinstance(exc_type, type) and issubclass(exc_type, AbandonedJobError):
        job_lost(job, "its worker died (no heartbeat)")


def job_lost(job: Any, why: str) -> None:
    """Record a run that ended with its process: rq retries the job when it has retries left
    (after its backoff), else the project is unblocked and a pending follow-up queued."""
    kind, project, retries, backoff = job.args[:4]
    redis = job.connection
    key = f"{kind}:{project}"
    raw = redis.get(f"{PREFIX}:last:{key}")
    record = json.loads(raw) if raw else {"key": key, "job": job.id}
    record.update(ended=time.time(), error=f"worker lost: {why}")
    if job.retries_left:
        record["state"] = JobState.LOST.value
        redis.set(_keys(key)[0], JobState.QUEUED.value, ex=state_ttl(job.timeout))
    else:
        record["state"] = JobState.FAILED.value
    log.warning("job %s (%s) lost: %s; %s", job.id, key, why, record["state"])
    redis.set(f"{PREFIX}:last:{key}", json.dumps(record, default=str))
    if record["state"] == JobState.FAILED:
        _finish(redis, kind, project, retries, backoff, job.timeout)


def make_queue(service: Service) -> JobQueue:
    """rq when REDIS_URL is set, else the embedded thread."""
    s = service.settings
    if s.redis_url:
        return RedisQueue(s.redis_url, retries=s.job_retries, timeout=s.job_timeout)
    return EmbeddedQueue(service, retries=s.job_retries, timeout=s.job_timeout)
