"""`crackal worker`: run background jobs from Redis (REDIS_URL) with rq."""

from __future__ import annotations

import argparse
import logging
import os

from backend.queues import QUEUE


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run retraining and scoring jobs from Redis (rq)")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from redis import Redis
    from rq import Queue, Worker

    url = os.environ.get("REDIS_URL")
    if not url:
        raise ValueError("REDIS_URL is not set (without Redis, `crackal serve` runs jobs itself)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    connection = Redis.from_url(url)
    worker = Worker([Queue(QUEUE, connection=connection)], connection=connection)
    worker.work(burst=args.burst, with_scheduler=True)
    return 0
