"""One job per project at a time, across threads, processes and the workers that share the
registry volume: an exclusive `flock` on `<registry>/projects/project-<id>/.job.lock`, held
for the job's run and released by the kernel when its process dies."""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("crackal.jobs")


@contextlib.contextmanager
def project_lock(registry_root: Path | str, project: int) -> Iterator[None]:
    """Hold the project's job lock (waiting for a job of the project that runs)."""
    folder = Path(registry_root) / "projects" / f"project-{int(project)}"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".job.lock", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("project %s: waiting for its running job", project)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
