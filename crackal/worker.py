"""`crackal worker`: run background jobs from Redis (REDIS_URL) with rq."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import time
from typing import Any

from backend.job_kind import JobKind
from backend.project_view import known_projects
from backend.queues import QUEUE, RedisQueue, job_lost, run_in_worker
from backend.settings import Settings
from training.registry import Registry


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run retraining and scoring jobs from Redis (rq)")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.add_argument(
        "--check-every",
        type=int,
        default=60,
        metavar="SECONDS",
        help="how often an idle worker looks for jobs whose worker died, to retry them "
        "(rq notices a dead worker 90 s after its last heartbeat; default: 60)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from redis import Redis
    from rq import Queue, Worker

    url = os.environ.get("REDIS_URL")
    if not url:
        raise ValueError("REDIS_URL is not set (without Redis, `crackal serve` runs jobs itself)")
    if args.check_every < 1:
        raise ValueError(f"--check-every must be at least 1 second, not {args.check_every}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    connection = Redis.from_url(url)
    reconcile_known_projects(RedisQueue(connection=connection))
    worker = Worker(
        [Queue(QUEUE, connection=connection)],
        connection=connection,
        # An idle worker wakes every worker_ttl - 15 s; maintenance (finding abandoned
        # jobs, taking over the scheduler of a dead worker) runs at most that often.
        worker_ttl=args.check_every + 15,
        maintenance_interval=args.check_every,
        work_horse_killed_handler=horse_killed,
    )
    worker.work(burst=args.burst, with_scheduler=True)
    return 0


def reconcile_known_projects(queue: RedisQueue) -> None:
    """Queue a reconcile job for every project the shared registry knows and arm its idle
    deadline: labels that came while no worker ran are trained on (at once from the retrain
    threshold on, fewer once idle; nothing happens when none changed)."""
    settings = Settings.from_env()  # the registry the jobs use, the default one included
    if not settings.registry.is_dir():
        return  # nothing trained or scored yet (and no folder made here)
    for project in known_projects(Registry(settings.registry)):
        queue.submit(JobKind.RECONCILE, project)
        queue.arm_idle(project, time.time() + settings.idle_delay)


def horse_killed(job: Any, pid: int, status: int, usage: Any) -> None:
    """The process running a job died (e.g. out of memory): record it; rq retries it."""
    if job.func_name != f"{run_in_worker.__module__}.{run_in_worker.__name__}":
        return
    if os.WIFSIGNALED(status):
        job_lost(job, f"its process ended (signal {_signal_name(os.WTERMSIG(status))})")
    else:
        job_lost(job, f"its process ended (exit status {os.waitstatus_to_exitcode(status)})")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # e.g. a real-time signal
        return str(number)
