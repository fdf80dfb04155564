"""The client API for jobs, as pydantic models: what ``/api/...`` takes and returns, and the webhook body.

Compatible with Avtomatika's client API: ``POST /api/v1/jobs/<endpoint>`` answers 202
``{"job_id", "status": "accepted"}``; a job view has ``id``, ``status``, ``blueprint_name`` and ``step``
(the current state), plus ``result`` once the job has ended; detailed views add ``state``, ``progress``
and ``error``. Status strings are Avtomatika's (:data:`TERMINAL_STATUSES`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "JOB_STATUSES",
    "TERMINAL_STATUSES",
    "WEBHOOK_EVENTS",
    "ApprovalRequest",
    "ApprovalResponse",
    "CancelResponse",
    "CreateJobRequest",
    "CreateJobResponse",
    "ErrorBody",
    "HistoryItem",
    "JobList",
    "JobView",
    "WebhookPayload",
    "WorkerView",
]

JSON = dict[str, Any]

WEBHOOK_URL_PATTERN = r"^https?://[A-Za-z0-9._~%!$&'()*+,;=:@\[\]-]+(?:[/?#][^\x00-\x20\x7f]*)?$"
"""An http(s) URL with a host, and no space or control character in it (what a job's ``webhook_url`` may be)."""

MAX_TIMEOUT_S = 366 * 86400.0
"""The longest dispatch or result timeout a job may ask for (a year and a day): longer is a mistake."""

JOB_STATUSES = (
    "pending",
    "running",
    "waiting_for_worker",
    "waiting_for_human",
    "waiting_for_parallel_tasks",
    "finished",
    "failed",
    "quarantined",
    "cancelled",
)
TERMINAL_STATUSES = frozenset({"finished", "failed", "quarantined", "cancelled", "error"})
WEBHOOK_EVENTS = ("job_finished", "job_failed", "job_quarantined")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CreateJobRequest(_Strict):
    """``POST /api/{version}/jobs/{endpoint}``. Timeouts are seconds. Other top-level fields are ignored, as
    Avtomatika ignores them (its clients send e.g. ``client_request_id``); the known ones are type-checked."""

    model_config = ConfigDict(extra="ignore", strict=True)

    initial_data: JSON = Field(default_factory=dict)
    webhook_url: str | None = Field(default=None, pattern=WEBHOOK_URL_PATTERN, max_length=2048)
    dispatch_timeout: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)
    result_timeout: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)
    metadata: JSON | None = None
    priority: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    policy: JSON | None = None
    """Avtomatika's job policy: ``allowed_skills`` limits the task types the job may dispatch."""
    # Accepted for Avtomatika clients; podium does not act on them yet.
    security: JSON | None = None
    max_transitions: int | None = Field(default=None, ge=1, le=2**31 - 1)


class CreateJobResponse(BaseModel):
    job_id: str
    status: Literal["accepted"] = "accepted"


class JobView(BaseModel):
    """One job. ``step`` is the current state's name (``state`` says the same in detailed views)."""

    model_config = ConfigDict(extra="allow")

    id: str
    job_id: str
    status: str
    blueprint_name: str
    step: str | None = None
    result: Any = None
    state: str | None = None
    progress: float | None = None
    progress_message: str | None = None
    error: JSON | None = None
    created_at: float | None = None
    updated_at: float | None = None


class JobList(BaseModel):
    """A page of jobs, newest first; pass ``next`` back as ``after`` for the following page."""

    items: list[JobView]
    next: str | None = None


class HistoryItem(BaseModel):
    seq: int
    event: str
    status: str | None = None
    ts: float
    data: JSON = Field(default_factory=dict)


class CancelResponse(BaseModel):
    status: Literal["cancellation_request_accepted"] = "cancellation_request_accepted"
    job_id: str


class ApprovalRequest(_Strict):
    """Approve or reject a job that waits for a human: ``decision`` names the transition
    (``approved``/``rejected`` or any the blueprint declared); ``data`` is merged into the job's state."""

    decision: str = Field(min_length=1)
    data: JSON = Field(default_factory=dict)
    token: str | None = None
    metadata: JSON | None = None


class ApprovalResponse(BaseModel):
    status: Literal["approval_received"] = "approval_received"
    job_id: str


class WorkerView(BaseModel):
    """A registered remote worker as ``GET /api/v1/workers`` shows it."""

    model_config = ConfigDict(extra="allow")

    worker_id: str
    worker_type: str = "generic"
    status: str
    skills: list[str]
    capacity: int | None = None
    current_tasks: list[str] = Field(default_factory=list)
    hot_skills: list[str] = Field(default_factory=list)
    cost_per_skill: dict[str, float] | None = None
    last_seen: float | None = None
    reputation: float | None = None
    """0..1, scored from its results on the answering instance (``REPUTATION_*``); ``None`` when unknown there."""


class WebhookPayload(BaseModel):
    """The body POSTed to a job's ``webhook_url``."""

    event: str
    job_id: str
    status: str
    result: Any = None
    error: JSON | None = None
    timestamp: float | None = None


class ErrorBody(BaseModel):
    """Every error response: ``error`` says what went wrong, ``field`` where (when a field is to blame)."""

    error: str
    field: str | None = None
    detail: Any = None
