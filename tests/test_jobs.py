"""The in-process job runner: one job per key, exactly one follow-up, retries with backoff."""

import threading
import time

from backend.job_kind import worth_giving_way
from backend.job_state import JobState, Submission
from backend.jobs import ThreadRunner
from backend.project_lock import project_lock


def test_one_job_per_key_and_exactly_one_follow_up():
    runner = ThreadRunner(retries=0)
    started, release, runs = threading.Event(), threading.Event(), []

    def job():
        runs.append(len(runs))
        if len(runs) == 1:
            started.set()
            release.wait(10)
        return len(runs)

    assert runner.submit("retrain:1", job) == "queued"
    assert started.wait(10)
    answers = [runner.submit("retrain:1", job) for _ in range(5)]
    assert answers == ["follow-up"] * 5
    assert runner.status()["running"] == "retrain:1"
    release.set()
    assert runner.wait_idle(10)
    assert runs == [0, 1]  # the first run, then one follow-up for all five events
    assert runner.status()["last"]["retrain:1"]["result"] == 2


def test_a_queued_key_is_not_queued_twice():
    runner = ThreadRunner(retries=0)
    gate = threading.Event()
    runner.submit("block", lambda: gate.wait(10))
    assert runner.submit("rescore:1", lambda: 1) == "queued"
    assert runner.submit("rescore:1", lambda: 2) == "already queued"
    gate.set()
    assert runner.wait_idle(10)
    assert runner.status()["last"]["rescore:1"]["result"] == 1


def test_failures_are_retried_with_backoff_then_reported():
    runner = ThreadRunner(retries=2, backoff=0.01)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("Label Studio is down")
        return "done"

    runner.submit("job", flaky)
    assert runner.wait_idle(10)
    record = runner.status()["last"]["job"]
    assert (record["state"], record["attempt"], record["result"]) == ("finished", 3, "done")

    def broken():
        raise ValueError("bad label config")

    runner.submit("bad", broken)
    assert runner.wait_idle(10)
    record = runner.status()["last"]["bad"]
    assert record["state"] == "failed" and record["attempt"] == 3
    assert record["error"] == "ValueError: bad label config"


def test_a_job_that_never_ends_times_out_and_unblocks_its_key():
    """E.g. a read that blocks for ever: the record says so and the key takes new work."""
    runner = ThreadRunner(retries=0, timeout=0.5)
    never = threading.Event()
    assert runner.submit("rescore:4", lambda: never.wait(60)) == Submission.QUEUED
    assert runner.wait_idle(10)
    record = runner.status()["last"]["rescore:4"]
    assert record["state"] == JobState.FAILED and "timed out after 0.5 s" in record["error"]
    assert runner.submit("rescore:4", lambda: "next") == Submission.QUEUED
    assert runner.wait_idle(10)
    assert runner.status()["last"]["rescore:4"]["result"] == "next"
    never.set()


def test_a_failed_attempt_reports_its_retry():
    runner = ThreadRunner(retries=1, backoff=30)
    runner.submit("bad", lambda: 1 / 0)
    deadline = threading.Event()
    for _ in range(100):
        record = runner.status()["last"]["bad"]
        if record["state"] != JobState.QUEUED and record["state"] != JobState.RUNNING:
            break
        deadline.wait(0.05)
    assert record["state"] == JobState.RETRYING and record["retry_in"] == 30
    assert record["error"].startswith("ZeroDivisionError")


def test_a_projects_jobs_wait_for_each_other_and_other_projects_do_not(tmp_path):
    order = []

    def job(name: str, project: int, hold: float) -> None:
        with project_lock(tmp_path, project):
            order.append(f"{name} start")
            time.sleep(hold)
            order.append(f"{name} end")

    first = threading.Thread(target=job, args=("rescore", 1, 0.5))
    first.start()
    time.sleep(0.1)
    second = threading.Thread(target=job, args=("retrain", 1, 0.0))
    other = threading.Thread(target=job, args=("other", 2, 0.0))
    second.start()
    other.start()
    for t in (first, second, other):
        t.join(10)
    assert order.index("retrain start") > order.index("rescore end")
    assert order.index("other end") < order.index("rescore end")


def test_a_thorough_pass_gives_way_to_queued_jobs_but_not_to_idle_ones():
    """The runner's queued keys, and the rule a thorough pass reads them by: an idle job
    would itself wait for a pass, so two passes never stop each other."""
    runner = ThreadRunner(retries=0)
    release = threading.Event()
    assert runner.submit("idle:1", lambda: release.wait(10)) == "queued"
    wait_until(lambda: runner.status()["running"] == "idle:1")
    assert runner.queued() == [] and not worth_giving_way(runner.queued())
    runner.submit("idle:2", lambda: None)
    assert runner.queued() == ["idle:2"] and not worth_giving_way(runner.queued())
    runner.submit("reconcile:3", lambda: None)
    assert runner.queued() == ["idle:2", "reconcile:3"] and worth_giving_way(runner.queued())
    release.set()
    assert runner.wait_idle(10) and runner.queued() == []
    for kind in ("retrain", "rescore", "reconcile"):
        assert worth_giving_way([f"{kind}:9"])


def wait_until(predicate, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.01)
