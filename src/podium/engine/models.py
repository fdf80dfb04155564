"""Job and task statuses (with the table of allowed transitions) and the read models the API returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "ERROR_CODES",
    "QUARANTINE_CODES",
    "RETRYABLE_CODES",
    "TERMINAL_STATUSES",
    "EngineEvent",
    "JobStatus",
    "JobView",
    "Task",
    "TaskStatus",
    "TaskView",
    "WorkerView",
    "check_transition",
]


class JobStatus(StrEnum):
    """A job's status; :data:`ALLOWED` lists the transitions the engine may make."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING_FOR_WORKER = "waiting_for_worker"
    WAITING_FOR_APPROVAL = "waiting_for_approval"
    WAITING_FOR_CHILDREN = "waiting_for_children"
    PAUSED = "paused"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    QUARANTINED = "quarantined"


TERMINAL_STATUSES = frozenset(
    {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUARANTINED}
)
_ENDINGS = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUARANTINED}
_WAITS = {JobStatus.WAITING_FOR_WORKER, JobStatus.WAITING_FOR_APPROVAL, JobStatus.WAITING_FOR_CHILDREN}

ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.PAUSED, *_WAITS, *_ENDINGS}),
    JobStatus.RUNNING: frozenset({JobStatus.RUNNING, JobStatus.PAUSED, *_WAITS, *_ENDINGS}),
    JobStatus.WAITING_FOR_WORKER: frozenset(
        {JobStatus.RUNNING, JobStatus.WAITING_FOR_WORKER, JobStatus.PAUSED, *_ENDINGS}
    ),
    JobStatus.WAITING_FOR_APPROVAL: frozenset({JobStatus.RUNNING, JobStatus.PAUSED, *_ENDINGS}),
    JobStatus.WAITING_FOR_CHILDREN: frozenset({JobStatus.RUNNING, JobStatus.PAUSED, *_ENDINGS}),
    JobStatus.PAUSED: frozenset({JobStatus.RUNNING, JobStatus.PAUSED, *_ENDINGS}),
    # Terminal jobs move only through the explicit "retry from state" operation.
    JobStatus.FINISHED: frozenset({JobStatus.RUNNING}),
    JobStatus.FAILED: frozenset({JobStatus.RUNNING}),
    JobStatus.CANCELLED: frozenset({JobStatus.RUNNING}),
    JobStatus.QUARANTINED: frozenset({JobStatus.RUNNING}),
}


_ALLOWED_STR: dict[str, frozenset[str]] = {
    old.value: frozenset(s.value for s in new) for old, new in ALLOWED.items()
}


def check_transition(old: str, new: str) -> None:
    """Raise :class:`ValueError` unless ``old -> new`` is in the table (a bug guard on every change)."""
    allowed = _ALLOWED_STR.get(old)  # plain strings: no enum conversions on the hot path
    if allowed is None or new not in allowed:
        raise ValueError(f"illegal job status transition {old} -> {new}")


class TaskStatus(StrEnum):
    """A task's status."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


OPEN_TASK = (TaskStatus.QUEUED, TaskStatus.RUNNING)

RETRYABLE_CODES = frozenset(
    {"TRANSIENT_ERROR", "RESOURCE_EXHAUSTED_ERROR", "TIMEOUT_ERROR", "INTERNAL_ERROR"}
)
QUARANTINE_CODES = frozenset(
    {"PERMANENT_ERROR", "SECURITY_ERROR", "DEPENDENCY_ERROR", "CONTRACT_VIOLATION_ERROR"}
)
ERROR_CODES = RETRYABLE_CODES | QUARANTINE_CODES | {"INVALID_INPUT_ERROR"}


@dataclass(frozen=True, slots=True)
class Task:
    """A task handed to a worker by :meth:`OrchestratorEngine.take_task`.

    ``token`` is the fencing token of this delivery; pass it back to ``complete_task``.
    """

    task_id: str
    job_id: str
    task_type: str
    params: dict[str, Any]
    token: int
    attempt: int
    priority: int
    worker_id: str
    result_deadline: float | None = None


@dataclass(frozen=True, slots=True)
class JobView:
    """What ``get_job`` returns: the job as stored, flattened for readers."""

    job_id: str
    blueprint: str
    status: str
    state: str
    initial_data: dict[str, Any]
    state_history: dict[str, Any]
    progress: float | None
    progress_message: str | None
    result: Any
    error: dict[str, Any] | None
    parent_job_id: str | None
    created_at: float
    updated_at: float
    finished_at: float | None
    version: int
    webhook_url: str | None = None
    waiting: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    client: dict[str, Any] | None = None
    """The client that created the job, as ``create_job(client=...)`` was given it (``token``, ``plan``,
    ``params``); ``None`` for jobs created without one. The server puts the client's name in ``token``."""

    @property
    def id(self) -> str:
        """Alias of ``job_id``."""
        return self.job_id

    @property
    def client_name(self) -> str | None:
        """Who created the job (``client["token"]``), or ``None``."""
        return (self.client or {}).get("token") or None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what the HTTP API serves)."""
        return {
            "id": self.job_id,
            "job_id": self.job_id,
            "blueprint_name": self.blueprint,
            "status": self.status,
            "state": self.state,
            "current_state": self.state,
            "initial_data": self.initial_data,
            "state_history": self.state_history,
            "progress": self.progress,
            "progress_message": self.progress_message,
            "result": self.result,
            "error": self.error,
            "parent_job_id": self.parent_job_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "finished_at": self.finished_at,
            "webhook_url": self.webhook_url,
            "waiting": self.waiting,
        }


@dataclass(frozen=True, slots=True)
class TaskView:
    """A task record as readers see it."""

    task_id: str
    job_id: str
    task_type: str
    status: str
    attempt: int
    worker_id: str | None
    params: dict[str, Any]
    result: dict[str, Any] | None
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class WorkerView:
    """A registered executor (in-process now, remote pull workers next)."""

    worker_id: str
    skills: list[str]
    capacity: int
    kind: str
    status: str
    running: int
    last_seen: float
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """One engine event, delivered to subscribers after the change it describes is committed.

    ``type`` is one of: ``job_created``, ``transition``, ``task_dispatched``, ``task_taken``, ``task_progress``,
    ``task_completed``, ``task_retry``, ``task_timeout``, ``result_ignored``, ``job_waiting``,
    ``job_finished``, ``job_failed``, ``job_cancelled``, ``job_quarantined``, ``job_paused``, ``job_resumed``,
    ``blueprint_event``, ``worker_registered``.
    """

    type: str
    job_id: str | None
    ts: float
    status: str | None = None
    state: str | None = None
    task_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
