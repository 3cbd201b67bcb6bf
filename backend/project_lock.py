"""One job per project at a time, across threads, processes and the workers that share the
registry volume: an exclusive `flock` on `<registry>/projects/project-<id>/.job.lock`, held
for the job's run and released by the kernel when its process dies. Across machines this
needs a shared filesystem whose locks work (local disks, NFSv4; not every CIFS mount)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from training.registry import project_folder

log = logging.getLogger("crackal.jobs")


class ProjectBusyError(TimeoutError):
    """Another job of the project held its lock for longer than this job may wait."""


@contextlib.contextmanager
def project_lock(registry_root: Path | str, project: int, wait: float = 3600.0) -> Iterator[None]:
    """Hold the project's job lock, waiting at most `wait` seconds for a job of the project
    that runs (then ProjectBusyError: the job fails and is retried later)."""
    folder = project_folder(registry_root, project)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".job.lock", "a") as fh:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ProjectBusyError(
                        f"project {project}: another job held it for over {wait:.0f} s"
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def project_busy(registry_root: Path | str, project: int) -> bool:
    """Whether a job of the project holds its lock now (in this process or another)."""
    lock = project_folder(registry_root, project) / ".job.lock"
    if not lock.exists():
        return False
    with open(lock, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False
