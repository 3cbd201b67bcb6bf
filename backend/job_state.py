"""The states a background job is reported in (`/health`, `crackal status`), and what a
submission answered. String values, so the JSON records read as before."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"  # for good: no attempt left
    RETRYING = "failed, will be retried"
    LOST = "lost, will be retried"  # its worker died; rq runs it again

    @property
    def ended(self) -> bool:
        """No run of this job is queued or running any more."""
        return self in (JobState.FINISHED, JobState.FAILED)


class Submission(StrEnum):
    """What `submit` did with a job."""

    QUEUED = "queued"
    ALREADY_QUEUED = "already queued"
    FOLLOW_UP = "follow-up"  # it runs now: exactly one more run follows
