"""The RXON worker protocol (the one Avtomatika's workers speak), as pydantic models.

Read off ``rxon`` 1.0b17 and ``avtomatika-worker`` 1.0b20 and written anew, so that an unmodified
``avtomatika-worker`` can register with a podium server, take tasks and return results, and so that
podium's own worker SDK (:mod:`podium.worker`) speaks the same thing.

Routes (all under ``/_worker``), each authenticated by ``X-Worker-Token`` (and naming the worker in
``X-Worker-ID``):

=========  ==========================================  =============================================
POST       ``/_worker/workers/register``               :class:`WorkerRegistration` ->
                                                       :class:`RegisterResponse`
PATCH      ``/_worker/workers/{worker_id}``            :class:`Heartbeat` -> :class:`HeartbeatResponse`
                                                       (404 "worker not found": register again)
GET        ``/_worker/workers/{worker_id}/tasks/next`` long poll, ``?timeout=s&available_skills=a,b``
                                                       -> :class:`TaskPayload` (200) or nothing (204)
POST       ``/_worker/tasks/result``                   :class:`TaskResult` -> :class:`ResultResponse`
POST       ``/_worker/events``                         :class:`WorkerEvent` (``progress`` events) ->
                                                       ``{"status": "event_accepted"}``
DELETE     ``/_worker/workers/{worker_id}``            deregister (a podium addition)
POST       ``/_worker/tasks/results``                  :class:`TaskResultBatch` ->
                                                       :class:`TaskResultBatchResponse` (podium)
=========  ==========================================  =============================================

podium's extensions, which an RXON worker never sends (so unmodified workers see the protocol above):
``GET .../tasks/next?max_tasks=n`` answers ``{"tasks": [TaskPayload, ...]}`` (up to ``n``) instead of one
payload, and ``POST /_worker/tasks/results`` carries several results at once and hands back the next
tasks in its answer (``next.max_tasks``), so a busy worker needs about one request per batch of tasks.
A podium worker talking to a server without them (404/405, or a single payload) falls back to the
plain protocol.

Messages may carry a ``security`` block whose ``signature`` is an HMAC-SHA256, keyed by the worker's
token, over the message's canonical JSON (:func:`canonical_json`: ``None`` values dropped, integral
floats written as integers, keys sorted, no spaces, the ``security`` field left out);
:func:`sign_payload` / :func:`verify_signature` compute and check it. ``timestamp`` fields are integer
Unix seconds.

Inbound models ignore fields they do not know (a newer worker's additions), never coerce types beyond
what JSON itself forces (an integral float is accepted where an int is declared), and every field a
model declares is typed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from decimal import Decimal
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from podium.wire.jsonschema import SchemaViolation, schema_violation

__all__ = [
    "AUTH_HEADER_CLIENT",
    "AUTH_HEADER_WORKER",
    "AUTH_HEADER_WORKER_ID",
    "COMMAND_CANCEL_TASK",
    "COMMAND_DRAIN",
    "COMMAND_SHUTDOWN",
    "ENDPOINT_EVENTS",
    "ENDPOINT_HEARTBEAT",
    "ENDPOINT_REGISTER",
    "ENDPOINT_TASK_NEXT",
    "ENDPOINT_TASK_RESULT",
    "ENDPOINT_TASK_RESULTS",
    "ERROR_CODE_CONTRACT_VIOLATION",
    "ERROR_CODE_DEPENDENCY",
    "ERROR_CODE_INTERNAL",
    "ERROR_CODE_INVALID_INPUT",
    "ERROR_CODE_PERMANENT",
    "ERROR_CODE_RESOURCE_EXHAUSTED",
    "ERROR_CODE_SECURITY",
    "ERROR_CODE_TIMEOUT",
    "ERROR_CODE_TRANSIENT",
    "EVENT_TYPE_PROGRESS",
    "IGNORED_REASON_CANCELLED",
    "IGNORED_REASON_LATE",
    "IGNORED_REASON_MISMATCH",
    "IGNORED_REASON_NOT_FOUND",
    "IGNORED_REASON_STALE",
    "MAX_TASKS_PER_CALL",
    "PROTOCOL_VERSION",
    "PROTOCOL_VERSION_HEADER",
    "TASK_STATUS_CANCELLED",
    "TASK_STATUS_FAILURE",
    "TASK_STATUS_SUCCESS",
    "WORKER_API_PREFIX",
    "DeviceUsage",
    "EventResponse",
    "HardwareDevice",
    "Heartbeat",
    "HeartbeatResponse",
    "InstalledArtifact",
    "NextTasks",
    "RegisterResponse",
    "Resources",
    "ResourcesUsage",
    "ResultResponse",
    "SchemaViolation",
    "SecurityContext",
    "SkillInfo",
    "TaskError",
    "TaskPayload",
    "TaskResult",
    "TaskResultBatch",
    "TaskResultBatchResponse",
    "WorkerCapabilities",
    "WorkerCommand",
    "WorkerEvent",
    "WorkerRegistration",
    "canonical_json",
    "schema_violation",
    "sign_payload",
    "verify_signature",
]

PROTOCOL_VERSION = "1.0b17"
PROTOCOL_VERSION_HEADER = "X-RXON-Version"

AUTH_HEADER_CLIENT = "X-Client-Token"
AUTH_HEADER_WORKER = "X-Worker-Token"
AUTH_HEADER_WORKER_ID = "X-Worker-ID"

WORKER_API_PREFIX = "/_worker"
ENDPOINT_REGISTER = f"{WORKER_API_PREFIX}/workers/register"
ENDPOINT_HEARTBEAT = f"{WORKER_API_PREFIX}/workers/{{worker_id}}"
ENDPOINT_TASK_NEXT = f"{WORKER_API_PREFIX}/workers/{{worker_id}}/tasks/next"
ENDPOINT_TASK_RESULT = f"{WORKER_API_PREFIX}/tasks/result"
ENDPOINT_EVENTS = f"{WORKER_API_PREFIX}/events"
ENDPOINT_TASK_RESULTS = f"{WORKER_API_PREFIX}/tasks/results"

MAX_TASKS_PER_CALL = 256
"""The most tasks one ``tasks/next?max_tasks=`` or ``tasks/results`` call hands out."""

ERROR_CODE_TRANSIENT = "TRANSIENT_ERROR"
ERROR_CODE_PERMANENT = "PERMANENT_ERROR"
ERROR_CODE_INVALID_INPUT = "INVALID_INPUT_ERROR"
ERROR_CODE_TIMEOUT = "TIMEOUT_ERROR"
ERROR_CODE_RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED_ERROR"
ERROR_CODE_CONTRACT_VIOLATION = "CONTRACT_VIOLATION_ERROR"
ERROR_CODE_DEPENDENCY = "DEPENDENCY_ERROR"
ERROR_CODE_SECURITY = "SECURITY_ERROR"
ERROR_CODE_INTERNAL = "INTERNAL_ERROR"

TASK_STATUS_SUCCESS = "success"
TASK_STATUS_FAILURE = "failure"
TASK_STATUS_CANCELLED = "cancelled"

EVENT_TYPE_PROGRESS = "progress"

COMMAND_CANCEL_TASK = "cancel_task"
COMMAND_DRAIN = "drain"
COMMAND_SHUTDOWN = "shutdown"

IGNORED_REASON_LATE = "deadline_exceeded"
IGNORED_REASON_CANCELLED = "job_cancelled"
IGNORED_REASON_NOT_FOUND = "job_not_found"
IGNORED_REASON_MISMATCH = "worker_mismatch"
IGNORED_REASON_STALE = "stale_task"

JSON = dict[str, Any]


class _In(BaseModel):
    """Inbound protocol message: unknown fields ignored (forward compatible), no silent coercion."""

    model_config = ConfigDict(extra="ignore", strict=False, frozen=True)

    def wire(self) -> JSON:
        """The JSON-ready dict, ``None`` values left out (as rxon sends them)."""
        return self.model_dump(mode="json", exclude_none=True)


class SecurityContext(_In):
    signature: str | None = None
    signer_id: str | None = None
    identity_chain: list[str] | None = None
    metadata: JSON | None = None


class HardwareDevice(_In):
    type: str
    model: str | None = None
    id: str | None = None
    properties: JSON | None = None
    metrics: JSON | None = None


class Resources(_In):
    devices: list[HardwareDevice] | None = None
    properties: JSON | None = None


class InstalledArtifact(_In):
    name: str
    version: str = "unknown"
    type: str | None = None
    properties: JSON | None = None


class WorkerCapabilities(_In):
    hostname: str = "unknown"
    ip_address: str = "0.0.0.0"
    cost_per_skill: dict[str, float] | None = None
    s3_config_hash: str | None = None
    extra: JSON | None = None


class SkillInfo(_In):
    """One skill (task type) a worker can run, with its input and output contracts (JSON Schema)."""

    name: str
    type: str | None = None
    description: str | None = None
    version: str | None = None
    input_schema: JSON | None = None
    output_schema: JSON | None = None
    events_schema: dict[str, JSON] | None = None
    output_statuses: list[str] | None = None
    schema_dialect: str = "json-schema"
    properties: JSON | None = None


class WorkerRegistration(_In):
    """``POST /_worker/workers/register``. ``capacity`` (max concurrent tasks) is a podium addition."""

    worker_id: str = Field(min_length=1, max_length=200)
    worker_type: str = "generic"
    supported_skills: list[SkillInfo] | None = None
    available_skills: list[str] | None = None
    hot_skills: list[str] | None = None
    resources: Resources | None = None
    installed_software: dict[str, str] | None = None
    installed_artifacts: list[InstalledArtifact] | None = None
    capabilities: WorkerCapabilities | None = None
    skills_hash: str | None = None
    security: SecurityContext | None = None
    metadata: JSON | None = None
    timestamp: int | float | None = None
    capacity: int | None = Field(default=None, ge=1)


class RegisterResponse(BaseModel):
    status: Literal["registered"] = "registered"
    version: str = PROTOCOL_VERSION
    warning: str | None = None
    heartbeat_interval_s: float | None = None


class DeviceUsage(_In):
    unit_id: str
    load_percent: float
    metrics: JSON | None = None


class ResourcesUsage(_In):
    cpu_load_percent: float = 0.0
    ram_used_gb: float = 0.0
    devices_usage: list[DeviceUsage] | None = None


class Heartbeat(_In):
    """``PATCH /_worker/workers/{id}``. ``status``: idle, busy, full, draining or offline."""

    worker_id: str
    status: str
    usage: ResourcesUsage | None = None
    current_tasks: list[str] | None = None
    supported_skills: list[SkillInfo] | None = None
    available_skills: list[str] | None = None
    hot_skills: list[str] | None = None
    skills_hash: str | None = None
    security: SecurityContext | None = None
    metadata: JSON | None = None
    timestamp: int | float | None = None


class WorkerCommand(_In):
    """An order for a worker, carried by a heartbeat response: ``cancel_task``, ``drain`` or ``shutdown``."""

    command: str
    task_id: str | None = None
    job_id: str | None = None
    params: JSON | None = None
    metadata: JSON | None = None


class HeartbeatResponse(BaseModel):
    """The reply to a heartbeat. ``cancel_task_ids`` and ``require_full_sync`` are what rxon workers read;
    ``commands`` (podium) also carries drain and shutdown orders."""

    status: str = "ok"
    cancel_task_ids: list[str] | None = None
    require_full_sync: bool | None = None
    next_heartbeat_jitter_ms: int | None = None
    commands: list[WorkerCommand] | None = None


class TaskPayload(_In):
    """A task handed to a worker by ``GET .../tasks/next``."""

    job_id: str
    task_id: str
    type: str
    params: JSON | None = None
    tracing_context: dict[str, str] | None = None
    params_metadata: JSON | None = None
    priority: float = 0.0
    deadline: int | None = None
    security: SecurityContext | None = None
    metadata: JSON | None = None
    timestamp: int | None = None
    policy: JSON | None = None
    sig: str | None = None
    step: int = 0
    depth: int = 0
    parent_hash: str | None = None


class TaskError(_In):
    code: str
    message: str
    details: JSON | None = None


class TaskResult(_In):
    """``POST /_worker/tasks/result``; ``status``: ``success``, ``failure``, ``cancelled`` or a custom one."""

    job_id: str
    task_id: str
    worker_id: str | None = None
    origin_worker_id: str | None = None
    status: str = TASK_STATUS_SUCCESS
    data: JSON | None = None
    error: TaskError | None = None
    data_metadata: JSON | None = None
    security: SecurityContext | None = None
    metadata: JSON | None = None
    timestamp: int | float | None = None
    costs: JSON | None = None


class ResultResponse(BaseModel):
    """``accepted``, or ``ignored`` with a ``reason`` (late, cancelled, unknown, not this worker's, stale)."""

    status: Literal["accepted", "ignored"]
    reason: str | None = None
    message: str | None = None


class NextTasks(_In):
    """What a :class:`TaskResultBatch` asks for in return: up to ``max_tasks`` tasks, taken at once."""

    max_tasks: int = Field(default=0, ge=0, le=MAX_TASKS_PER_CALL)
    available_skills: list[str] | None = None


class TaskResultBatch(_In):
    """``POST /_worker/tasks/results`` (podium): several results, each applied as ``tasks/result`` applies
    it (side by side), and ``next``: the tasks to lease meanwhile; signed as one message."""

    worker_id: str | None = None
    results: list[TaskResult] = Field(default_factory=list, max_length=1000)
    next: NextTasks | None = None
    security: SecurityContext | None = None
    timestamp: int | float | None = None


class TaskResultBatchResponse(BaseModel):
    """One :class:`ResultResponse` per result, in order, and the tasks handed out (``TaskPayload`` dicts)."""

    results: list[ResultResponse]
    tasks: list[JSON] = Field(default_factory=list)


class WorkerEvent(_In):
    """``POST /_worker/events``; a ``progress`` event's payload: ``{"progress": 0..100, "message": str}``."""

    event_id: str
    worker_id: str
    origin_worker_id: str | None = None
    event_type: str
    payload: JSON = Field(default_factory=dict)
    origin_task_id: str | None = None
    bubbling_chain: list[str] | None = None
    target_job_id: str | None = None
    target_task_id: str | None = None
    trace_context: dict[str, str] | None = None
    priority: float = 0.0
    timestamp: int | float | None = None
    security: SecurityContext | None = None
    metadata: JSON | None = None


class EventResponse(BaseModel):
    status: str = "event_accepted"


# --- signatures ---------------------------------------------------------------------------------------


_PLAIN_TYPES = frozenset({str, int, bool, type(None)})


_LEAVES = frozenset({str, int, bool})  # written as they are: no call per leaf


def _normalise(value: Any, odd: list[bool]) -> Any:
    """Drop ``None`` members, integral floats to ints; note in ``odd`` any value ``json.dumps`` would write
    differently from :func:`_dump` (a float written with an exponent, a non-JSON type)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if v is not None:
                out[k if type(k) is str else str(k)] = v if type(v) in _LEAVES else _normalise(v, odd)
        return out
    if isinstance(value, list | tuple):
        return [v if type(v) in _LEAVES else _normalise(v, odd) for v in value]
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        if not odd and (not math.isfinite(value) or "e" in repr(value)):
            odd.append(True)
        return value
    if not odd and type(value) not in _PLAIN_TYPES:
        odd.append(True)
    return value


def _float_text(value: float) -> str:
    # orjson's form: repr()'s shortest round-trip digits; plain decimals from 1e-5 up to 1e16, otherwise
    # an exponent written "e-7" / "e+16".
    if not math.isfinite(value):
        raise ValueError("NaN and infinities are not JSON")
    text = repr(value)
    if "e" not in text:
        return text
    mantissa, exponent_text = text.split("e")
    exponent = int(exponent_text)
    if exponent == -5:
        return format(Decimal(text), "f")
    return f"{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent)}"


def _dump(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value)):
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _dump(value[key], out)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _dump(item, out)
        out.append("]")
    elif isinstance(value, bool) or value is None:
        out.append(json.dumps(value))
    elif isinstance(value, float):
        out.append(_float_text(value))
    elif isinstance(value, int):
        out.append(str(value))
    else:
        out.append(json.dumps(str(value), ensure_ascii=False))


def canonical_json(payload: JSON, *, ignore_fields: tuple[str, ...] = ()) -> bytes:
    """The bytes a message's signature covers (see the module docstring)."""
    odd: list[bool] = []
    data = _normalise(payload, odd)
    for name in ("security", "_signature", *ignore_fields):
        data.pop(name, None)
    if not odd:  # only JSON types and plainly written floats: a C encoder writes the same bytes
        try:
            return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)  # ~10x the stdlib's speed
        except TypeError:  # an integer wider than 64 bits
            return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    out: list[str] = []
    _dump(data, out)
    return "".join(out).encode()


def sign_payload(payload: JSON, secret: str, *, ignore_fields: tuple[str, ...] = ()) -> str:
    """HMAC-SHA256 hex digest of the message's canonical JSON, keyed by ``secret`` (the worker token)."""
    if not secret:
        raise ValueError("a signing secret cannot be empty")
    return hmac.new(
        secret.encode(), canonical_json(payload, ignore_fields=ignore_fields), hashlib.sha256
    ).hexdigest()


def verify_signature(
    payload: JSON, signature: str, secret: str, *, ignore_fields: tuple[str, ...] = ()
) -> bool:
    """Check a signature in constant time."""
    if not signature or not secret:
        return False
    return hmac.compare_digest(sign_payload(payload, secret, ignore_fields=ignore_fields), signature)


# The contract checker (SchemaViolation, schema_violation) lives in podium.wire.jsonschema; re-exported here.
