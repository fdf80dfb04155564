"""The retry policy of tasks: from a task's record and its error, retry after a delay or give up with a status.

Dramatiq's Retries middleware in one pure function: :meth:`RetryPolicy.decide` reads nothing but its
arguments and the config's limits. It must not touch the store, the plan or the clock (``now`` is given); the caller writes what it decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from podium.engine.config import Config
from podium.engine.models import QUARANTINE_CODES, RETRYABLE_CODES, JobStatus
from podium.store.base import Record

__all__ = ["GiveUp", "Retry", "RetryPolicy"]


class Retry(NamedTuple):
    """Queue the task again as ``attempt`` after ``delay_s`` (due at ``due_at``)."""

    attempt: int
    delay_s: float
    due_at: float


class GiveUp(NamedTuple):
    """End the job as ``status`` with ``error`` (the task is done)."""

    status: JobStatus
    error: dict[str, Any]


class RetryPolicy:
    """Retries of transient errors with exponential back-off; quarantine or failure for the others."""

    __slots__ = ("backoff_base_s", "backoff_max_s", "max_retries")

    def __init__(self, config: Config) -> None:
        self.max_retries = config.JOB_MAX_RETRIES
        self.backoff_base_s = config.RETRY_BACKOFF_BASE_S
        self.backoff_max_s = config.RETRY_BACKOFF_MAX_S

    def decide(self, task: Record, error: Mapping[str, Any] | None, now: float) -> Retry | GiveUp | None:
        """What a result with ``error`` means for ``task`` (its record): a :class:`Retry`, a :class:`GiveUp`,
        or ``None`` (no error that ends or repeats it: the job moves on as usual)."""
        code = error.get("code") if isinstance(error, Mapping) else None
        if code is None:
            return None
        d = task.data
        attempt = d["attempt"]
        if code in RETRYABLE_CODES:
            max_retries = d.get("max_retries")
            if max_retries is None:
                max_retries = self.max_retries
            if attempt <= max_retries:
                delay = min(self.backoff_max_s, self.backoff_base_s * (2 ** (attempt - 1)))
                return Retry(attempt + 1, delay, now + delay)
            last = (error or {}).get("message")
            return GiveUp(
                JobStatus.QUARANTINED,
                {
                    **(error or {}),
                    "code": code,
                    "message": f"task {task.id} failed {attempt} times; last: {last}",
                },
            )
        if code in QUARANTINE_CODES:
            return GiveUp(JobStatus.QUARANTINED, dict(error or {}))
        if code == "INVALID_INPUT_ERROR":
            return GiveUp(JobStatus.FAILED, dict(error or {}))
        return None
