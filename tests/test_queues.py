"""Jobs on Redis + rq (fakeredis and rq's SimpleWorker): one job per project, exactly one
follow-up, failures retried and visible, label events counted across processes."""

from __future__ import annotations

import os
import signal
import socket
import time

import fakeredis
import pytest
from rq import SimpleWorker
from rq.registry import StartedJobRegistry

from backend import job_functions, queues
from backend.job_kind import JobKind
from backend.queues import _FINISH, JOB_TIMEOUT, QUEUE, STATE_TTL, RedisQueue, _keys
from crackal.worker import horse_killed, reconcile_known_projects


@pytest.fixture
def redis():
    return fakeredis.FakeRedis()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_project_has_one_queued_job(redis):
    queue = RedisQueue(connection=redis)
    assert queue.submit("retrain", 1) == "queued"
    assert queue.submit("retrain", 1) == "already queued"
    assert queue.submit("rescore", 1) == "queued"
    assert queue.submit("retrain", 2) == "queued"
    assert len(queue.queue) == 3
    assert queue.status()["queued"] == ["rescore:1", "retrain:1", "retrain:2"]


def test_an_unknown_job_kind_is_refused_before_anything_is_queued(redis):
    queue = RedisQueue(connection=redis)
    with pytest.raises(ValueError, match=r"unknown job kind 'retrian'.*rescore, retrain"):
        queue.submit("retrian", 1)
    assert len(queue.queue) == 0 and redis.get(_keys("retrian:1")[0]) is None
    assert queue.submit(JobKind.RETRAIN, 1) == "queued"
    (job,) = queue.queue.jobs
    assert job.args[0] == "retrain" and type(job.args[0]) is str  # pickled as plain text


def test_events_during_a_run_cause_exactly_one_follow_up(redis):
    queue = RedisQueue(connection=redis)
    state, follow_up = _keys("retrain:1")
    redis.set(state, "running")
    assert [queue.submit("retrain", 1) for _ in range(5)] == ["follow-up"] * 5
    assert len(queue.queue) == 0
    assert redis.eval(_FINISH, 2, state, follow_up, STATE_TTL) == 1  # the run ends
    assert redis.get(state) == b"queued"
    assert redis.eval(_FINISH, 2, state, follow_up, STATE_TTL) == 0  # the follow-up ends
    assert redis.get(state) is None
    assert queue.submit("retrain", 1) == "queued"


def test_label_events_are_shared_and_reset(redis):
    a, b = RedisQueue(connection=redis), RedisQueue(connection=redis)
    assert [a.count_label_event(7), b.count_label_event(7), a.count_label_event(7)] == [1, 2, 3]
    b.reset_label_events(7)
    assert a.count_label_event(7) == 1
    assert a.status()["label_changes"] == {"7": 1}


def test_a_failing_job_is_retried_then_visible_and_the_project_unblocked(
    redis, monkeypatch, tiny_registry
):
    monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("CRACKAL_REGISTRY", str(tiny_registry.root))
    job_functions.worker_service.cache_clear()
    queue = RedisQueue(connection=redis, retries=1, backoff=0)
    assert queue.submit("rescore", 5) == "queued"
    SimpleWorker([queue.queue], connection=redis).work(burst=True)
    last = queue.status()["last"]["rescore:5"]
    assert last["state"] == "failed" and "unreachable" in last["error"]
    assert last["attempt"] == 2  # the first run and one retry
    assert queue.status()["queued"] == [] and queue.status()["running"] == []
    assert queue.submit("rescore", 5) == "queued"  # nothing left stuck
    assert queue.queue.name == QUEUE
    job_functions.worker_service.cache_clear()


def test_a_webhook_storm_leaves_at_most_one_job_per_project(redis):
    queue = RedisQueue(connection=redis)
    for _ in range(200):
        if queue.count_label_event(3) >= 3:
            queue.reset_label_events(3)
            queue.submit("retrain", 3)
    assert len(queue.queue) == 1 and queue.status()["queued"] == ["retrain:3"]


def start_and_lose(queue: RedisQueue):
    """A worker takes the queued job, starts it, and dies without a trace (no heartbeat)."""
    worker = SimpleWorker([queue.queue], connection=queue.redis)
    worker.register_birth()
    job, _ = queue.queue.dequeue_any([queue.queue], None, connection=queue.redis)
    worker.prepare_execution(job)
    worker.prepare_job_execution(job)
    kind, project = job.args[:2]
    queue.redis.set(_keys(f"{kind}:{project}")[0], "running")
    return job


@pytest.fixture
def ran(monkeypatch):
    """The job body replaced by a recorder: these tests are about the bookkeeping around it."""
    calls = []
    monkeypatch.setattr(queues, "worker_service", lambda: None)
    monkeypatch.setattr(
        queues,
        "run_job",
        lambda kind, project, service, shards, waiting: calls.append(kind) or {},
    )
    return calls


def test_a_job_abandoned_by_a_dead_worker_is_retried_and_keeps_its_follow_up(redis, ran):
    queue = RedisQueue(connection=redis, retries=1, backoff=0)
    queue.submit("retrain", 1)
    start_and_lose(queue)
    assert queue.submit("retrain", 1) == "follow-up"  # a label arrives meanwhile
    # What any live worker's maintenance does once the dead worker's heartbeat has expired:
    StartedJobRegistry(queue=queue.queue).cleanup(time.time() + JOB_TIMEOUT + 3600)
    last = queue.status()["last"]["retrain:1"]
    assert last["state"] == "lost, will be retried" and "worker died" in last["error"]
    assert queue.status()["queued"] == ["retrain:1"] and len(queue.queue) == 1
    SimpleWorker([queue.queue], connection=redis).work(burst=True)
    assert ran == ["retrain", "retrain"]  # the retry, then the one follow-up
    last = queue.status()["last"]["retrain:1"]
    assert last["state"] == "finished" and last["pid"] == os.getpid()
    assert queue.status()["queued"] == queue.status()["running"] == []


def test_a_job_lost_on_its_last_attempt_fails_visibly_and_unblocks_the_project(redis, ran):
    queue = RedisQueue(connection=redis, retries=0)
    queue.submit("rescore", 2)
    start_and_lose(queue)
    StartedJobRegistry(queue=queue.queue).cleanup(time.time() + JOB_TIMEOUT + 3600)
    last = queue.status()["last"]["rescore:2"]
    assert last["state"] == "failed" and last["error"].startswith("worker lost")
    assert queue.status()["running"] == [] and len(queue.queue) == 0
    assert queue.submit("rescore", 2) == "queued"
    assert ran == []


def test_a_killed_work_horse_is_recorded_with_its_signal(redis, ran):
    queue = RedisQueue(connection=redis, retries=2, backoff=0)
    queue.submit("retrain", 3)
    job = start_and_lose(queue)
    horse_killed(job, 1234, signal.SIGKILL, None)  # waitpid status of a SIGKILLed child
    last = queue.status()["last"]["retrain:3"]
    assert last["state"] == "lost, will be retried" and "SIGKILL" in last["error"]
    assert queue.status()["queued"] == ["retrain:3"]


def test_an_idle_deadline_is_pushed_by_each_label_and_taken_by_one_process(redis):
    a, b = RedisQueue(connection=redis), RedisQueue(connection=redis)
    a.train_when_idle(7, 100.0)
    b.train_when_idle(7, 160.0)  # a later label: the deadline moves
    a.train_when_idle(8, 120.0)
    assert a.status()["train_when_idle"] == {"8": 120.0, "7": 160.0}
    assert a.take_idle(110.0) == [] and b.take_idle(130.0) == [8]
    assert a.take_idle(130.0) == []  # taken once
    a.reset_label_events(7)  # a retrain started: nothing left to train when idle
    assert b.take_idle(1e12) == []
    a.train_when_idle(9, 200.0)
    b.arm_idle(9, 500.0)  # reconciling at start: an existing deadline stands
    b.arm_idle(10, 300.0)
    assert a.status()["train_when_idle"] == {"9": 200.0, "10": 300.0}


def test_a_starting_worker_reconciles_the_projects_of_the_default_registry(
    redis, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    for name in ("CRACKAL_REGISTRY", "MODEL_DIR"):
        monkeypatch.delenv(name, raising=False)
    queue = RedisQueue(connection=redis)
    reconcile_known_projects(queue)  # no registry yet: nothing queued, no folder made
    assert queue.queued() == [] and not (tmp_path / "registry").exists()
    (tmp_path / "registry" / "projects" / "project-5").mkdir(parents=True)
    reconcile_known_projects(queue)
    assert queue.queued() == ["reconcile:5"]
