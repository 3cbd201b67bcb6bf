"""Jobs on Redis + rq (fakeredis and rq's SimpleWorker): one job per project, exactly one
follow-up, failures retried and visible, label events counted across processes."""

from __future__ import annotations

import socket

import fakeredis
import pytest
from rq import SimpleWorker

from backend import job_functions
from backend.queues import _FINISH, QUEUE, STATE_TTL, RedisQueue, _keys


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
    redis, monkeypatch, tmp_path
):
    monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("CRACKAL_REGISTRY", str(tmp_path))
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
