"""A large project's scoring spread over several rq workers.

The scoring job of a project with more than `CRACKAL_SHARD_TASKS` tasks first splits it
into pages of that many tasks (Label Studio's own task pages). The page numbers go to a
Redis list; the job enqueues helper jobs (one per page but its own, at most
`CRACKAL_SHARD_HELPERS`) and takes pages itself too, so a project never waits for a
worker that is not there. Each page: fetch, embed and predict its new tasks (no cached
features) into the shared feature and mask caches, and write its index entries (task ->
image URL and content hash) to the project's folder, under the run's name. Then the
scoring job proper runs (`Service.rescore_project`) with that run's entries: it fetches no
image a reported page analysed for new features, fits P u S once, scores, masks what a new
version still needs in the queue's order (fetching those images), and imports.

A page whose helper died or is late is simply done again by that final pass: pages only
fill caches, so doing one twice costs time, never correctness. Splitting is an
optimisation: if Redis or rq fail at it, the job scores the project without it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

from backend.pool_store import PoolStore
from backend.service import Service

log = logging.getLogger("crackal.jobs")
PREFIX = "crackal:shards"


@dataclass
class ShardPool:
    """Where a scoring job finds helpers: the rq queue it runs on."""

    redis: Any
    queue_name: str
    timeout: int  # seconds a helper job may run

    @staticmethod
    def pages(service: Service, project: int) -> int:
        """How many pages of `CRACKAL_SHARD_TASKS` the project's tasks make (1: not worth
        splitting)."""
        per_page = service.settings.shard_tasks
        if per_page < 1:
            return 1
        _, total = service.client.tasks_page(project, 1, 1)
        return max(1, math.ceil(total / per_page))

    def analyse(self, service: Service, project: int) -> tuple[str | None, list[dict[str, Any]]]:
        """Analyse the project's pages on this worker and any free ones. Returns the run's
        name (None when the project is one page) and one record per page reported
        ({page, worker, host, tasks, fetched, seconds} or {page, error})."""
        from rq import Queue

        pages = self.pages(service, project)
        if pages < 2:
            return None, []
        per_page, helpers = service.settings.shard_tasks, service.settings.shard_helpers
        PoolStore(service.settings.registry, project).clear_shard_indexes()  # older runs'
        run = uuid.uuid4().hex[:12]
        todo, done = _keys(project, run)
        try:
            with self.redis.pipeline() as pipe:
                pipe.rpush(todo, *range(1, pages + 1))
                pipe.expire(todo, self.timeout + 300)
                pipe.execute()
            queue = Queue(self.queue_name, connection=self.redis)
            for _ in range(min(pages - 1, helpers)):
                queue.enqueue(
                    analyse_pages,
                    project,
                    run,
                    per_page,
                    self.timeout,
                    job_timeout=self.timeout,
                    result_ttl=3600,
                    failure_ttl=86400,
                )
            slowest, _ = drain(service, self.redis, project, run, per_page, self.timeout)
            deadline = time.monotonic() + max(120.0, 3 * slowest)
            while self.redis.hlen(done) < pages and time.monotonic() < deadline:
                time.sleep(0.5)
            records = [json.loads(v) for v in self.redis.hvals(done)]
        finally:
            self.redis.delete(todo, done)
        if len(records) < pages:
            log.warning(
                "project %s: %d of %d pages not reported by their helpers in time: the "
                "scoring job does them itself",
                project,
                pages - len(records),
                pages,
            )
        return run, sorted(records, key=lambda r: r["page"])


def _keys(project: int, run: str) -> tuple[str, str]:
    """The run's Redis list of pages to do and hash of pages done."""
    return f"{PREFIX}:{project}:{run}:todo", f"{PREFIX}:{project}:{run}:done"


def drain(
    service: Service, redis: Any, project: int, run: str, page_size: int, ttl: int
) -> tuple[float, int]:
    """Take pages from the run's list until it is empty; returns the longest page's
    seconds and how many pages this call did. The project's last index is read once, at the
    first page."""
    todo, done = _keys(project, run)
    index: dict[int, dict[str, str]] | None = None
    slowest, count = 0.0, 0
    while (raw := redis.lpop(todo)) is not None:
        page = int(raw)
        t0 = time.monotonic()
        try:
            if index is None:  # not before a page is taken: a late helper finds none
                index = PoolStore(service.settings.registry, project).load_index()
            record = analyse_page(service, project, run, page, page_size, index)
        except Exception as exc:  # this page only: the final pass does it again
            log.warning("project %s page %s: %s", project, page, exc)
            record = {"page": page, "error": f"{exc.__class__.__name__}: {exc}"[:300]}
        slowest, count = max(slowest, time.monotonic() - t0), count + 1
        with redis.pipeline() as pipe:  # a hash that outlives its run expires with it
            pipe.hset(done, str(page), json.dumps(record))
            pipe.expire(done, ttl + 300)
            pipe.execute()
    return slowest, count


def analyse_page(
    service: Service,
    project: int,
    run: str,
    page: int,
    page_size: int,
    index: dict[int, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Fetch, embed and predict the new images of one page of tasks into the caches; keep
    its index. Masks of a new version over cached features are left to the final pass,
    which makes them in the queue's order. `index` is the project's last index (read from
    the store when not given)."""
    from rq import get_current_job

    t0 = time.monotonic()
    serving = service.holder.current(project)
    store = PoolStore(service.settings.registry, project)
    tasks, _ = service.client.tasks_page(project, page, page_size)
    if index is None:
        index = store.load_index()
    walked = service.walk_tasks(serving, project, tasks, index, service.target(project))
    store.save_shard_index(run, page, walked.index)
    job = get_current_job()
    return {
        "page": page,
        "worker": job.worker_name if job else None,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "tasks": sorted(walked.index),
        "failed": len(walked.errors),
        "fetched": walked.fetched,
        "seconds": round(time.monotonic() - t0, 1),
    }


def analyse_pages(project: int, run: str, page_size: int, ttl: int) -> int:
    """The helper rq job: pages of `run` until none is left; returns how many it did."""
    from rq import get_current_job

    from backend.job_functions import worker_service

    redis = get_current_job().connection
    return drain(worker_service(), redis, project, run, page_size, ttl)[1]
