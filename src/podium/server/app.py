"""The ASGI app: client API (``/api``), RXON worker API (``/_worker``), public routes (``/_public``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from podium.engine.context import ClientConfig as EngineClient
from podium.engine.definition import JobDefinition
from podium.engine.engine import OrchestratorEngine
from podium.engine.errors import (
    BlueprintNotFoundError,
    InputValidationError,
    JobNotFoundError,
    JobStateError,
    TaskNotFoundError,
)
from podium.engine.models import TERMINAL_STATUSES, Task
from podium.engine.models import JobView as EngineJobView
from podium.errors import ConfigError, InvalidInputError, NotFoundError
from podium.server._state import RemoteWorker, ServerState
from podium.server.quotas import QuotaExceeded
from podium.server.security import ClientConfig
from podium.server.settings import ServerSettings
from podium.wire import codec as wire_json
from podium.wire import rxon
from podium.wire.jobs import (
    ApprovalRequest,
    ApprovalResponse,
    CancelResponse,
    CreateJobRequest,
    CreateJobResponse,
    ErrorBody,
    HistoryItem,
    JobList,
    JobView,
    WorkerView,
)

__all__ = ["ApiError", "create_app", "job_path"]

log = logging.getLogger("podium.server")

# Avtomatika's names for podium's statuses, where they differ.
_STATUS_OUT = {"waiting_for_approval": "waiting_for_human"}
_STATUS_IN = {v: k for k, v in _STATUS_OUT.items()}
_LIST_SCAN_PAGES = 20  # pages of other clients' jobs a listing reads past before it answers


class ApiError(Exception):
    """An error answer: ``status`` and an :class:`~podium.wire.jobs.ErrorBody`."""

    def __init__(
        self,
        status: int,
        error: str,
        *,
        field: str | None = None,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status, self.body, self.headers = (
            status,
            ErrorBody(error=error, field=field, detail=detail),
            headers,
        )
        super().__init__(error)


def job_path(definition: JobDefinition, api_prefix: str = "api") -> str:
    """Where a blueprint's jobs are created: ``/api/{version}/jobs/{endpoint}`` (no version: ``/api/jobs/...``)."""
    endpoint = (definition.api_endpoint or definition.name).strip("/")
    if not endpoint.startswith("jobs/"):
        endpoint = f"jobs/{endpoint}"
    prefix = f"/{api_prefix.strip('/')}" if api_prefix.strip("/") else ""
    version = f"/{definition.api_version}" if definition.api_version else ""
    return f"{prefix}{version}/{endpoint}"


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.podium
    return state


# --- authentication -------------------------------------------------------------------------------


def _auth_client(st: ServerState, token: str | None) -> ClientConfig:
    """Authenticate a client token (its request is counted separately, by :func:`_count`)."""
    client = st.clients.authenticate(token)
    if client is None:
        st.metrics.auth_failures.labels("client").inc()
        raise ApiError(401, f"{'missing' if not token else 'invalid'} {rxon.AUTH_HEADER_CLIENT} header")
    return client


async def _count(
    st: ServerState, client: ClientConfig, *, request: bool = True, submission: bool = False
) -> None:
    """Count a request and/or a job submission against the client's quotas (429 past one)."""
    try:
        await st.quotas.count(client, request=request, submission=submission)
    except QuotaExceeded as exc:
        raise _quota_error(st, exc) from None


async def _client(request: Request) -> ClientConfig:
    """Authenticate the client and count the request against its quotas (once per request)."""
    cached: ClientConfig | None = getattr(request.state, "client", None)
    if cached is not None:
        return cached
    st = _state(request)
    client = _auth_client(st, request.headers.get(rxon.AUTH_HEADER_CLIENT))
    await _count(st, client)
    request.state.client = client
    return client


def _quota_error(st: ServerState, exc: QuotaExceeded) -> ApiError:
    st.metrics.quota_blocked.labels(exc.quota).inc()
    headers = {"Retry-After": str(max(1, int(exc.retry_after_s + 0.999)))} if exc.retry_after_s else None
    body = exc.body()
    return ApiError(429, body["error"], field=body["field"], detail=body["detail"], headers=headers)


async def _admin(request: Request) -> ClientConfig:
    client = await _client(request)
    if not _state(request).clients.may_administer(client):
        raise ApiError(403, f"client '{client.name}' is not an administrator")
    return client


def _auth_worker(
    st: ServerState, header_id: str | None, token: str | None, claimed: str | None = None
) -> tuple[str, str]:
    """Authenticate a worker; return ``(worker_id, token)``. Every id the request names must agree."""
    if header_id and claimed and header_id != claimed:
        st.metrics.auth_failures.labels("worker").inc()
        raise ApiError(403, f"worker id mismatch: {' vs '.join(sorted((header_id, claimed)))}")
    worker_id = header_id or claimed
    if not worker_id or not token or not st.worker_tokens.verify(worker_id, token):
        st.metrics.auth_failures.labels("worker").inc()
        what = "missing" if not token else "invalid"
        raise ApiError(401, f"{what} {rxon.AUTH_HEADER_WORKER} for worker {worker_id or '(unnamed)'}")
    return worker_id, token


def _worker(request: Request, claimed: str | None = None) -> tuple[str, str]:
    """Authenticate the worker of a request; return ``(worker_id, token)``."""
    headers = request.headers
    return _auth_worker(
        _state(request),
        headers.get(rxon.AUTH_HEADER_WORKER_ID),
        headers.get(rxon.AUTH_HEADER_WORKER),
        claimed,
    )


def _check_signature(st: ServerState, body: dict[str, Any], worker_id: str, token: str) -> None:
    security = body.get("security")
    if not st.settings.verify_worker_signatures or not isinstance(security, dict):
        return
    signature = security.get("signature")
    if not signature:
        return
    signer = security.get("signer_id")
    if signer and signer != worker_id:
        raise ApiError(403, f"message signed by {signer!r}, sent by worker {worker_id!r}")
    ignore = ("bubbling_chain",) if "event_type" in body else ()
    if not rxon.verify_signature(body, str(signature), token, ignore_fields=ignore):
        st.metrics.auth_failures.labels("signature").inc()
        raise ApiError(403, f"invalid message signature from worker {worker_id!r}")


# --- views ----------------------------------------------------------------------------------------


def _job_out(st: ServerState, job: EngineJobView) -> dict[str, Any]:
    status = _STATUS_OUT.get(job.status, job.status)
    out: dict[str, Any] = {
        "id": job.job_id,
        "job_id": job.job_id,
        "status": status,
        "blueprint_name": job.blueprint,
        "step": job.state,
        "state": job.state,
        "progress": job.progress,
        "progress_message": job.progress_message,
        "result": job.result if job.status in TERMINAL_STATUSES else None,
        "error": job.error,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
    }
    if st.settings.detailed_api_responses:
        out.update(
            initial_data=job.initial_data,
            state_history=job.state_history,
            parent_job_id=job.parent_job_id,
            finished_at=job.finished_at,
            waiting=job.waiting,
        )
    return out


def _worker_out(st: ServerState, w: RemoteWorker) -> dict[str, Any]:
    offline = st.clock.now() - w.last_seen > st.settings.worker_timeout_s
    return WorkerView(
        worker_id=w.worker_id,
        worker_type=w.worker_type,
        status="offline" if offline else w.status,
        skills=sorted(w.skills),
        capacity=w.capacity,
        current_tasks=list(w.current_tasks),
        hot_skills=list(w.hot_skills),
        cost_per_skill=w.cost_per_skill,
        last_seen=w.last_seen,
        supported_skills=[s.wire() for s in w.skills.values()],
    ).model_dump(mode="json")


async def _get_job(st: ServerState, job_id: str, client: ClientConfig | None = None) -> EngineJobView:
    """The job, as ``client`` may see it: a client reads and acts only on the jobs it created (and on jobs
    created without a client, in-process), unless it is an ``admin``; any other job is a 404 to it."""
    try:
        job = await st.engine.get_job(job_id)
    except JobNotFoundError:
        raise ApiError(404, f"job {job_id!r} not found") from None
    if client is not None and not _may_see(client, job):
        raise ApiError(404, f"job {job_id!r} not found")
    return job


def _may_see(client: ClientConfig, job: EngineJobView) -> bool:
    owner = job.client_name
    return owner is None or owner == client.name or client.admin


# --- the client API -------------------------------------------------------------------------------


def _client_router(st: ServerState) -> APIRouter:
    s = st.settings
    prefix = f"/{s.api_prefix.strip('/')}" if s.api_prefix.strip("/") else ""
    # The dependency authenticates before FastAPI validates any body: no token, no 422.
    r = APIRouter(
        tags=["jobs"],
        responses={401: {"model": ErrorBody}, 429: {"model": ErrorBody}},
        dependencies=[Depends(_client)],
    )

    @r.get(
        f"{prefix}/v1/jobs/{{job_id}}",
        response_model=JobView,
        summary="A job's status, state, progress, result",
    )
    async def get_job(job_id: str, request: Request) -> dict[str, Any]:
        return _job_out(st, await _get_job(st, job_id, await _client(request)))

    @r.get(
        f"{prefix}/v1/jobs/{{job_id}}/wait",
        response_model=JobView,
        summary="Wait (long poll) for a job to end",
    )
    async def wait_job(
        request: Request, job_id: str, wait_s: float = Query(30.0, ge=0, le=300, alias="timeout")
    ) -> dict[str, Any]:
        await _get_job(st, job_id, await _client(request))
        try:
            view = await st.engine.wait_for_job(job_id, timeout_s=wait_s)
        except TimeoutError:
            view = await _get_job(st, job_id)
        return _job_out(st, view)

    @r.post(f"{prefix}/v1/jobs/{{job_id}}/cancel", response_model=CancelResponse, summary="Cancel a job")
    async def cancel_job(job_id: str, request: Request) -> CancelResponse:
        await _get_job(st, job_id, await _client(request))
        try:
            await st.engine.cancel_job(job_id, reason="cancelled through the API")
        except JobStateError as exc:
            raise ApiError(409, str(exc)) from None
        return CancelResponse(job_id=job_id)

    @r.get(
        f"{prefix}/v1/jobs/{{job_id}}/history", response_model=list[HistoryItem], summary="A job's history"
    )
    async def job_history(job_id: str, request: Request) -> list[HistoryItem]:
        await _get_job(st, job_id, await _client(request))
        entries = await st.engine.job_history(job_id)
        return [HistoryItem(seq=e.seq, event=e.event, status=e.status, ts=e.ts, data=e.data) for e in entries]

    async def _resolve(
        request: Request, job_id: str, decision: str, data: dict[str, Any], token: str | None
    ) -> Any:
        await _get_job(st, job_id, await _client(request))
        try:
            await st.engine.resolve_approval(job_id, decision, data, token=token)
        except JobStateError as exc:
            raise ApiError(409, str(exc), field="decision" if "decision" in str(exc) else None) from None
        return ApprovalResponse(job_id=job_id)

    @r.post(
        f"{prefix}/v1/jobs/{{job_id}}/approval", response_model=ApprovalResponse, summary="Answer an approval"
    )
    async def approval(job_id: str, request: Request, body: ApprovalRequest) -> Any:
        await _client(request)
        return await _resolve(request, job_id, body.decision, body.data, None)

    @r.post(f"{prefix}/v1/jobs/{{job_id}}/approve", response_model=ApprovalResponse, summary="Approve a job")
    async def approve(job_id: str, request: Request, data: dict[str, Any] | None = Body(None)) -> Any:
        await _client(request)
        return await _resolve(request, job_id, "approved", data or {}, None)

    @r.post(f"{prefix}/v1/jobs/{{job_id}}/reject", response_model=ApprovalResponse, summary="Reject a job")
    async def reject(job_id: str, request: Request, data: dict[str, Any] | None = Body(None)) -> Any:
        await _client(request)
        return await _resolve(request, job_id, "rejected", data or {}, None)

    @r.get(f"{prefix}/v1/jobs", response_model=JobList, summary="Jobs, newest first, filtered and paginated")
    async def list_jobs(
        request: Request,
        status: str | None = None,
        blueprint: str | None = None,
        after: str | None = None,
        limit: int = Query(50, ge=1),
    ) -> dict[str, Any]:
        client = await _client(request)
        limit = min(limit, s.max_page_size)
        statuses = [_STATUS_IN.get(x, x) for x in status.split(",")] if status else None
        # A client sees its own jobs (and unowned ones); pages are filled by reading on past the others,
        # up to a bound, and "next" says where the next page starts reading.
        page: list[EngineJobView] = []
        more = False
        cursor = after
        for _ in range(_LIST_SCAN_PAGES):
            views = await st.engine.list_jobs(
                status=statuses, blueprint=blueprint, after=cursor, limit=limit + 1, descending=True
            )
            if not views:
                more = False
                break
            for v in views[:limit]:
                cursor = v.job_id
                if _may_see(client, v):
                    page.append(v)
                    if len(page) == limit:
                        break
            more = cursor != views[-1].job_id  # read stopped before the last job fetched: there are more
            if len(page) == limit or not more:
                break
        return {"items": [_job_out(st, v) for v in page], "next": cursor if more else None}

    @r.get(f"{prefix}/v1/blueprints", summary="Registered blueprints and where to submit their jobs")
    async def list_blueprints(request: Request) -> list[dict[str, Any]]:
        await _client(request)
        return [
            {**d.get_contract(), "path": job_path(d, s.api_prefix)}
            for d in st.engine.blueprints.values()
            if d.api_endpoint
        ]

    @r.get(
        f"{prefix}/v1/blueprints/{{name}}/graph", response_class=PlainTextResponse, summary="Mermaid graph"
    )
    async def blueprint_graph(name: str, request: Request) -> PlainTextResponse:
        await _client(request)
        try:
            return PlainTextResponse(st.engine.blueprint_graph(name), media_type="text/plain; charset=utf-8")
        except BlueprintNotFoundError:
            raise ApiError(404, f"blueprint {name!r} not found") from None

    @r.get(
        f"{prefix}/v1/workers",
        response_model=list[WorkerView],
        summary="Registered executors: remote workers, and in-process ones (a workcell's) from the registry",
    )
    async def list_workers(request: Request) -> list[dict[str, Any]]:
        await _client(request)
        out = [_worker_out(st, w) for w in st.workers.values()]
        for w in await st.engine.list_workers():
            if w.kind == "in_process" and w.status != "offline" and w.worker_id not in st.workers:
                view = WorkerView(
                    worker_id=w.worker_id,
                    worker_type=w.kind,
                    status=w.status,
                    skills=sorted(w.skills),
                    capacity=w.capacity,
                    last_seen=w.last_seen,
                )
                out.append(view.model_dump(mode="json"))
        return out

    @r.post(f"{prefix}/v1/admin/reload-workers", tags=["admin"], summary="Reload workers.toml")
    async def reload_workers(request: Request) -> dict[str, Any]:
        await _admin(request)
        try:
            count = st.worker_tokens.reload()
        except ConfigError as exc:
            raise ApiError(400, str(exc)) from None
        return {"status": "reloaded", "workers": count}

    @r.post(
        f"{prefix}/v1/admin/workers/{{worker_id}}/{{command}}", tags=["admin"], summary="Drain or shut down"
    )
    async def command_worker(worker_id: str, command: str, request: Request) -> dict[str, Any]:
        await _admin(request)
        if command not in (rxon.COMMAND_DRAIN, rxon.COMMAND_SHUTDOWN):
            raise ApiError(422, f"unknown command {command!r} (drain, shutdown)", field="command")
        worker = st.workers.get(worker_id)
        if worker is None:
            raise ApiError(404, f"worker {worker_id!r} not found")
        worker.commands.append(rxon.WorkerCommand(command=command))
        return {"status": "queued", "worker_id": worker_id, "command": command}

    return r


async def _create_job(
    st: ServerState, client: ClientConfig, blueprint: str, body: CreateJobRequest, *, counted: bool
) -> str:
    """Check the client's submission quotas and create the job; return its id. ``counted``: the request
    itself was already counted (else it is counted together with the submission, in one write)."""
    if client.quotas.max_active_jobs is not None:
        active = await st.engine.count_jobs(
            status=[
                "pending",
                "running",
                "waiting_for_worker",
                "waiting_for_approval",
                "waiting_for_children",
            ],
            client=client.name,
        )
        try:
            st.quotas.check_active(client, active)
        except QuotaExceeded as exc:
            if not counted:
                await _count(st, client)  # a refused submission is still a request
            raise _quota_error(st, exc) from None
    await _count(st, client, request=not counted, submission=True)
    try:
        return await st.engine.create_job(
            blueprint,
            body.initial_data,
            webhook_url=body.webhook_url,
            dispatch_timeout=body.dispatch_timeout,
            result_timeout=body.result_timeout,
            client=EngineClient(token=client.name, plan=client.plan, params=dict(client.params)),
        )
    except InputValidationError as exc:
        field = f"initial_data.{exc.field}" if exc.field else "initial_data"
        raise ApiError(422, f"invalid initial_data for blueprint {blueprint!r}: {exc}", field=field) from None


def _create_handler(st: ServerState, name: str | None) -> Callable[..., Awaitable[JSONResponse]]:
    async def create_job(
        request: Request, body: CreateJobRequest, endpoint: str | None = None
    ) -> JSONResponse:
        client = await _client(request)
        blueprint = name
        if blueprint is None:  # the generic route: find the blueprint by its endpoint and version
            version = request.path_params.get("version")
            try:
                definition = st.engine.get_definition(f"/jobs/{endpoint}")
            except BlueprintNotFoundError:
                try:
                    definition = st.engine.get_definition(str(endpoint))
                except BlueprintNotFoundError:
                    raise ApiError(404, f"no blueprint at {request.url.path}") from None
            if (definition.api_version or None) != (version or None):
                raise ApiError(404, f"no blueprint at {request.url.path}")
            blueprint = definition.name
        job_id = await _create_job(st, client, blueprint, body, counted=True)
        return JSONResponse({"job_id": job_id, "status": "accepted"}, status_code=202)

    return create_job


def _blueprint_routes(st: ServerState, app: FastAPI) -> None:
    s = st.settings
    prefix = f"/{s.api_prefix.strip('/')}" if s.api_prefix.strip("/") else ""
    for definition in st.engine.blueprints.values():
        if not definition.api_endpoint:
            continue
        contract = definition.get_contract().get("input_schema")
        app.add_api_route(
            job_path(definition, s.api_prefix),
            _create_handler(st, definition.name),
            methods=["POST"],
            status_code=202,
            response_model=CreateJobResponse,
            tags=["blueprints"],
            summary=f"Create a {definition.name} job",
            description=f"Starts blueprint **{definition.name}**. `initial_data` contract:\n\n```json\n"
            f"{contract}\n```",
            responses={422: {"model": ErrorBody}},
            name=f"create_{definition.name}",
            dependencies=[Depends(_client)],
        )
    # Blueprints registered after the app was built are still reachable here.
    generic = _create_handler(st, None)
    app.add_api_route(
        f"{prefix}/{{version}}/jobs/{{endpoint:path}}",
        generic,
        dependencies=[Depends(_client)],
        methods=["POST"],
        status_code=202,
        response_model=CreateJobResponse,
        tags=["blueprints"],
        summary="Create a job (any versioned blueprint)",
    )
    app.add_api_route(
        f"{prefix}/jobs/{{endpoint:path}}",
        generic,
        dependencies=[Depends(_client)],
        methods=["POST"],
        status_code=202,
        response_model=CreateJobResponse,
        tags=["blueprints"],
        summary="Create a job (any unversioned blueprint)",
    )


# --- the worker API (RXON) ------------------------------------------------------------------------


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _parse(model: type[rxon._In], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or None
        raise ApiError(422, f"invalid {model.__name__}: {field}: {err['msg']}", field=field) from None


def _worker_router(st: ServerState) -> APIRouter:
    r = APIRouter(tags=["workers (RXON)"], responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}})

    @r.post(rxon.ENDPOINT_REGISTER, summary="Register a worker", response_model=rxon.RegisterResponse)
    async def register(request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        worker_id, token = _worker(
            request, body.get("worker_id") if isinstance(body.get("worker_id"), str) else None
        )
        _check_signature(st, body, worker_id, token)
        reg: rxon.WorkerRegistration = _parse(rxon.WorkerRegistration, body)
        now = st.clock.now()
        skills = {s.name: s for s in reg.supported_skills or []}
        for name in reg.available_skills or []:
            skills.setdefault(name, rxon.SkillInfo(name=name))
        caps = reg.capabilities
        st.workers[worker_id] = RemoteWorker(
            worker_id=worker_id,
            worker_type=reg.worker_type,
            skills=skills,
            capacity=reg.capacity,
            registered_at=now,
            last_seen=now,
            hot_skills=list(reg.hot_skills or []),
            cost_per_skill=caps.cost_per_skill if caps else None,
        )
        st.metrics.workers.set(len(st.workers))
        await st.engine.register_worker_record(
            worker_id,
            sorted(skills),
            capacity=reg.capacity or 1,
            kind="remote",
            info={"worker_type": reg.worker_type, "hostname": caps.hostname if caps else None},
        )
        version = request.headers.get(rxon.PROTOCOL_VERSION_HEADER)
        warning = (
            f"protocol version mismatch: server {rxon.PROTOCOL_VERSION}, worker {version}"
            if version and version != rxon.PROTOCOL_VERSION
            else None
        )
        log.info("worker %s registered: %s", worker_id, sorted(skills), extra={"worker_id": worker_id})
        return rxon.RegisterResponse(
            warning=warning, heartbeat_interval_s=st.settings.worker_heartbeat_interval_s
        ).model_dump(exclude_none=True)

    @r.patch(rxon.ENDPOINT_HEARTBEAT, summary="Heartbeat; the answer may carry commands")
    async def heartbeat(worker_id: str, request: Request) -> dict[str, Any]:
        _, token = _worker(request, worker_id)
        body = await _json_body(request) if await request.body() else {}
        worker = st.workers.get(worker_id)
        if worker is None:
            raise ApiError(404, f"worker {worker_id} not found: register again")
        if body:
            _check_signature(st, body, worker_id, token)
        hb: rxon.Heartbeat | None = _parse(rxon.Heartbeat, body) if body else None
        worker.last_seen = st.clock.now()
        if hb is not None:
            worker.status = hb.status
            worker.current_tasks = list(hb.current_tasks or [])
            if hb.hot_skills is not None:
                worker.hot_skills = list(hb.hot_skills)
            for skill in hb.supported_skills or []:
                worker.skills[skill.name] = skill
        await st.engine.heartbeat_worker(
            worker_id, status="offline" if worker.status == "offline" else "online"
        )
        cancel = []
        for task_id in worker.current_tasks:
            with contextlib.suppress(NotFoundError):
                if await st.engine.is_task_cancelled(task_id):
                    cancel.append(task_id)
                    continue
                # A task still running here keeps its lease, however long it takes.
                delivered = st.delivered.get(task_id)
                if delivered is not None and delivered.worker_id == worker_id:
                    await st.engine.extend_task(task_id, delivered.token)
        commands, worker.commands = worker.commands, []
        reply = rxon.HeartbeatResponse(cancel_task_ids=cancel or None, commands=commands or None)
        return reply.model_dump(mode="json", exclude_none=True)

    @r.delete(rxon.ENDPOINT_HEARTBEAT, summary="Deregister a worker")
    async def deregister(worker_id: str, request: Request) -> dict[str, Any]:
        _worker(request, worker_id)
        if st.workers.pop(worker_id, None) is None:
            raise ApiError(404, f"worker {worker_id} not found")
        st.metrics.workers.set(len(st.workers))
        with contextlib.suppress(NotFoundError):
            await st.engine.heartbeat_worker(worker_id, status="offline")
        return {"status": "deregistered", "worker_id": worker_id}

    @r.get(rxon.ENDPOINT_TASK_NEXT, summary="Long-poll for the next task", responses={204: {}})
    async def next_task(
        worker_id: str,
        request: Request,
        poll_s: float = Query(0.0, ge=0, alias="timeout"),
        available_skills: str | None = None,
        max_tasks: int | None = Query(None, ge=1, le=rxon.MAX_TASKS_PER_CALL),
    ) -> Response:
        _worker(request, worker_id)
        _, payload = await _next_tasks(st, worker_id, available_skills, max_tasks, poll_s, request.receive)
        return Response(status_code=204) if payload is None else JSONResponse(payload)

    @r.post(rxon.ENDPOINT_TASK_RESULT, summary="Submit a task's result", response_model=rxon.ResultResponse)
    async def task_result(request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        claimed = body.get("worker_id") if isinstance(body.get("worker_id"), str) else None
        worker_id, token = _worker(request, claimed)
        return await _task_result(st, worker_id, token, body)

    @r.post(
        rxon.ENDPOINT_TASK_RESULTS,
        summary="Submit several results and take the next tasks (podium extension)",
        response_model=rxon.TaskResultBatchResponse,
    )
    async def task_results(request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        claimed = body.get("worker_id") if isinstance(body.get("worker_id"), str) else None
        worker_id, token = _worker(request, claimed)
        return await _task_results(st, worker_id, token, body)

    @r.post(rxon.ENDPOINT_EVENTS, summary="Worker events (progress)", response_model=rxon.EventResponse)
    async def worker_event(request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        claimed = body.get("worker_id") if isinstance(body.get("worker_id"), str) else None
        worker_id, token = _worker(request, claimed)
        _check_signature(st, body, worker_id, token)
        event: rxon.WorkerEvent = _parse(rxon.WorkerEvent, body)
        task_id = event.target_task_id or event.origin_task_id
        if event.event_type == rxon.EVENT_TYPE_PROGRESS and task_id:
            raw = event.payload.get("progress", 0)
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise ApiError(422, "progress must be a number from 0 to 100", field="payload.progress")
            message = event.payload.get("message")
            try:
                await st.engine.report_progress(
                    task_id, float(raw), str(message) if message is not None else None
                )
            except TaskNotFoundError:
                raise ApiError(404, f"task {task_id} not found") from None
            except InvalidInputError as exc:
                raise ApiError(422, str(exc), field="payload.progress") from None
        return {"status": "event_accepted"}

    return r


async def _until_disconnected(receive: Callable[[], Awaitable[Mapping[str, Any]]]) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _task_wire(task: Task, now: float) -> dict[str, Any]:
    """``rxon.TaskPayload(...).wire()`` for a task, built directly (a test keeps the two equal)."""
    out: dict[str, Any] = {
        "job_id": task.job_id,
        "task_id": task.task_id,
        "type": task.task_type,
        "params": task.params,
        "priority": float(task.priority),
    }
    if task.result_deadline:
        out["deadline"] = int(task.result_deadline)
    out["metadata"] = {"attempt": task.attempt}
    out["timestamp"] = int(now)
    out["step"] = 0
    out["depth"] = 0
    return out


async def _next_tasks(
    st: ServerState,
    worker_id: str,
    available_skills: str | None,
    max_tasks: int | None,
    poll_s: float,
    receive: Callable[[], Awaitable[Mapping[str, Any]]] | None,
) -> tuple[int, Any]:
    """``GET .../tasks/next``: ``(200, TaskPayload)``, or ``(200, {"tasks": [...]})`` when ``max_tasks`` is
    given (podium extension), or ``(204, None)``. A long poll (``poll_s`` > 0) ends early when ``receive``
    reports that the worker hung up."""
    worker = st.workers.get(worker_id)
    if worker is None:
        raise ApiError(404, f"worker {worker_id} not found: register again")
    skills = list(worker.skills)
    if available_skills is not None:
        wanted = {x.strip() for x in available_skills.split(",") if x.strip()}
        skills = [x for x in skills if x in wanted]
    if not skills:
        return 204, None
    now = st.clock.now()
    worker.last_seen = now
    limit = max_tasks or 1
    # Under load a task is waiting: take it without arming the long poll's disconnect watch.
    tasks = await st.engine.take_tasks(worker_id, skills, limit=limit, wait_s=0)
    wait_s = min(poll_s, st.settings.worker_poll_timeout_s)
    if not tasks and wait_s > 0 and receive is not None:
        tasks = await _take_unless_gone(st, receive, worker_id, skills, limit, wait_s)
        now = st.clock.now()
    if not tasks:
        return 204, None
    for task in tasks:
        st.delivered[task.task_id] = task
    if max_tasks is None:
        return 200, _task_wire(tasks[0], now)
    return 200, {"tasks": [_task_wire(t, now) for t in tasks]}


async def _take_unless_gone(
    st: ServerState,
    receive: Callable[[], Awaitable[Mapping[str, Any]]],
    worker_id: str,
    skills: list[str],
    limit: int,
    wait_s: float,
) -> list[Task]:
    """Long-poll the engine for tasks, giving up as soon as the worker hangs up."""
    take = asyncio.ensure_future(st.engine.take_tasks(worker_id, skills, limit=limit, wait_s=wait_s))
    gone = asyncio.ensure_future(_until_disconnected(receive))
    try:
        await asyncio.wait({take, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hung_up = gone.done() and not gone.cancelled() and gone.exception() is None
        gone.cancel()
        if not take.done():
            take.cancel()  # the engine gives back whatever it had leased by then
    with contextlib.suppress(asyncio.CancelledError):
        await gone
    try:
        tasks = await take
    except asyncio.CancelledError:
        if asyncio.current_task() is not None and asyncio.current_task().cancelling():  # type: ignore[union-attr]
            raise
        return []
    if hung_up and tasks:
        # Leased in the instant the worker left: hand them back now, not when their leases expire.
        for task in tasks:
            with contextlib.suppress(NotFoundError):
                await st.engine.release_task(task.task_id, task.token)
        return []
    return tasks


async def _task_result(st: ServerState, worker_id: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /_worker/tasks/result`` once the worker is authenticated."""
    _check_signature(st, body, worker_id, token)
    result: rxon.TaskResult = _parse(rxon.TaskResult, body)
    return await _apply_result(st, worker_id, result)


async def _task_results(st: ServerState, worker_id: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /_worker/tasks/results`` (podium extension): apply each result as ``tasks/result`` would,
    then lease up to ``next.max_tasks`` new tasks without waiting."""
    _check_signature(st, body, worker_id, token)
    batch: rxon.TaskResultBatch = _parse(rxon.TaskResultBatch, body)
    for i, result in enumerate(batch.results):
        if result.worker_id is not None and result.worker_id != worker_id:
            st.metrics.auth_failures.labels("worker").inc()
            raise ApiError(
                403, f"worker id mismatch: {result.worker_id} vs {worker_id}", field=f"results.{i}.worker_id"
            )
    replies = [await _apply_result(st, worker_id, r) for r in batch.results]
    tasks: list[dict[str, Any]] = []
    # A worker the server forgot gets no tasks here; its next poll answers 404 and it registers again.
    if batch.next is not None and batch.next.max_tasks and worker_id in st.workers:
        skills = ",".join(batch.next.available_skills) if batch.next.available_skills is not None else None
        status, payload = await _next_tasks(st, worker_id, skills, batch.next.max_tasks, 0.0, None)
        if status == 200:
            tasks = payload["tasks"]
    return {"results": replies, "tasks": tasks}


def _ignored(reason: str) -> dict[str, Any]:
    """``rxon.ResultResponse(status="ignored", reason=...)`` as sent (built directly on the hot path)."""
    return {"status": "ignored", "reason": reason}


async def _apply_result(st: ServerState, worker_id: str, result: rxon.TaskResult) -> dict[str, Any]:
    """Apply one result; the :class:`rxon.ResultResponse` to send, as a dict."""
    # The engine fences results on the delivery's lease token (or, for a task this process did not hand
    # out, on the worker id): a stale holder's result is recorded and ignored there. The token and the
    # task type come from what this process delivered; after a restart, from the task record.
    delivered = st.delivered.get(result.task_id)
    token: int | None
    if delivered is not None:
        task_type, token = delivered.task_type, delivered.token
    else:
        try:
            view = await st.engine.get_task(result.task_id)
        except TaskNotFoundError:
            return _ignored(rxon.IGNORED_REASON_NOT_FOUND)
        task_type, token = view.task_type, None
    if delivered is not None and delivered.worker_id != worker_id:
        log.warning(
            "worker %s sent a result for task %s held by %s",
            worker_id,
            result.task_id,
            delivered.worker_id,
            extra={"worker_id": worker_id, "task_id": result.task_id},
        )
        return _ignored(rxon.IGNORED_REASON_MISMATCH)
    status, data = result.status, result.data
    error = result.error.wire() if result.error else None
    if status == rxon.TASK_STATUS_SUCCESS:
        worker = st.workers.get(worker_id)
        skill = worker.skills.get(task_type) if worker else None
        violation = rxon.schema_violation(data or {}, skill.output_schema if skill else None)
        if violation is not None:
            message = (
                f"contract violation: the result of task {result.task_id} ({task_type}) from worker {worker_id} "
                f"does not match its declared output schema: {violation}"
            )
            log.warning(
                message, extra={"worker_id": worker_id, "task_id": result.task_id, "job_id": result.job_id}
            )
            status = rxon.TASK_STATUS_FAILURE
            error = {
                "code": rxon.ERROR_CODE_CONTRACT_VIOLATION,  # the engine quarantines the job
                "message": message,
                "details": {"field": violation.path},
            }
    elif error is not None and error.get("code") == rxon.ERROR_CODE_CONTRACT_VIOLATION:
        # The worker caught its own contract violation: say which task, skill and worker in the job's error.
        error = {
            **error,
            "message": f"contract violation reported by worker {worker_id} for task {result.task_id} "
            f"({task_type}): {error.get('message')}",
        }
    try:
        outcome = await st.engine.complete_task(
            result.task_id, status, data, error, token=token, worker_id=worker_id
        )
    except TaskNotFoundError:
        return _ignored(rxon.IGNORED_REASON_NOT_FOUND)
    except JobNotFoundError:
        return _ignored(rxon.IGNORED_REASON_NOT_FOUND)
    st.delivered.pop(result.task_id, None)
    if outcome == "ignored":
        return _ignored(rxon.IGNORED_REASON_STALE)
    return {"status": "accepted", "message": outcome}


# --- public routes --------------------------------------------------------------------------------


def _public_router(st: ServerState) -> APIRouter:
    r = APIRouter(prefix="/_public", tags=["public"])

    @r.get("/health", summary="Liveness")
    async def health() -> dict[str, Any]:
        return {"status": "ok"}

    @r.get("/status", summary="Liveness (Avtomatika's route)")
    async def status() -> dict[str, str]:
        return {"status": "ok"}

    @r.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        return Response(generate_latest(st.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @r.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/_public/openapi.json", title="podium API")

    @r.post("/webhooks/approval/{job_id}", summary="Answer an approval (Avtomatika's route)")
    async def approval_webhook(job_id: str, request: Request, token: str | None = None) -> ApprovalResponse:
        try:
            raw = await request.json()
        except ValueError:
            raw = None
        body: dict[str, Any] = raw if isinstance(raw, dict) else {}
        token = token or (body.get("token") if isinstance(body.get("token"), str) else None)
        client = await _client(request) if token is None else None  # without the job's token, a client token
        if raw is None:
            raise ApiError(400, "the body is not valid JSON")
        decision = body.get("decision")
        if not isinstance(decision, str) or not decision:
            raise ApiError(422, "decision is required", field="decision")
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        await _get_job(st, job_id, client)
        try:
            await st.engine.resolve_approval(job_id, decision, data, token=token)
        except JobStateError as exc:
            code = 403 if "token" in str(exc) else 409
            raise ApiError(code, str(exc)) from None
        return ApprovalResponse(job_id=job_id)

    return r


# --- the app --------------------------------------------------------------------------------------


_Receive = Callable[[], Awaitable[Mapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_JSON_HEADERS = [(b"content-type", b"application/json")]
_VERSION_HEADER = (rxon.PROTOCOL_VERSION_HEADER.lower().encode(), rxon.PROTOCOL_VERSION.encode())
_MAX_BODY = 16 * 1024 * 1024
_NEXT_SUFFIX = "/tasks/next"


class _BodyTooLarge(Exception):
    pass


class _Front:
    """The outermost layer, pure ASGI: request metrics, the RXON version header on worker routes, and the
    hot routes (job submission to a blueprint's endpoint, ``tasks/next``, ``tasks/result``,
    ``tasks/results``) served directly. Those routes keep their FastAPI twins (OpenAPI, the same core
    functions); everything else goes to FastAPI."""

    def __init__(self, app: Any, st: ServerState) -> None:
        self.app, self.st = app, st
        self.job_routes: dict[str, str] = {}
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._latency: dict[str, Any] = {}
        self._next_prefix = f"{rxon.WORKER_API_PREFIX}/workers/"

    def observe(self, method: str, template: str, status: int, seconds: float) -> None:
        key = (method, template, status)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = self.st.metrics.requests.labels(method, template, str(status))
        counter.inc()
        histogram = self._latency.get(template)
        if histogram is None:
            histogram = self._latency[template] = self.st.metrics.latency.labels(template)
        histogram.observe(seconds)

    async def __call__(self, scope: dict[str, Any], receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path, method = scope["path"], scope["method"]
        template: str | None = None
        if method == "POST":
            if (
                path == rxon.ENDPOINT_TASK_RESULT
                or path == rxon.ENDPOINT_TASK_RESULTS
                or path in self.job_routes
            ):
                template = path
        elif method == "GET" and path.endswith(_NEXT_SUFFIX) and path.startswith(self._next_prefix):
            worker_id = path[len(self._next_prefix) : -len(_NEXT_SUFFIX)]
            if worker_id and "/" not in worker_id:
                template = rxon.ENDPOINT_TASK_NEXT
        if template is not None:
            status = await self._serve(scope, receive, send, template)
            self.observe(method, template, status, time.perf_counter() - started)
            return
        status_holder = [500]
        worker_route = path.startswith(rxon.WORKER_API_PREFIX)

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                if worker_route:
                    message["headers"] = [*message.get("headers", []), _VERSION_HEADER]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            self.observe(
                method, getattr(route, "path", "unmatched"), status_holder[0], time.perf_counter() - started
            )

    async def _serve(self, scope: dict[str, Any], receive: _Receive, send: _Send, template: str) -> int:
        worker_route = template.startswith(rxon.WORKER_API_PREFIX)
        headers: list[tuple[bytes, bytes]] = []
        try:
            status, payload = await self._route(scope, receive, template)
        except ApiError as exc:
            status, payload = exc.status, exc.body.model_dump(exclude_none=True)
            headers = [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
        except _BodyTooLarge:
            status, payload = 413, {"error": f"the body is larger than {_MAX_BODY} bytes"}
        except Exception:
            log.exception("%s %s failed", scope["method"], scope["path"])
            status, payload = 500, {"error": "internal server error"}
        body = b"" if payload is None else _dumps(payload)
        headers += [(b"content-length", str(len(body)).encode())]
        if payload is not None:
            headers += _JSON_HEADERS
        if worker_route:
            headers.append(_VERSION_HEADER)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return status

    async def _route(self, scope: dict[str, Any], receive: _Receive, template: str) -> tuple[int, Any]:
        st = self.st
        raw_headers = scope["headers"]
        if template == rxon.ENDPOINT_TASK_NEXT:
            worker_id = scope["path"][len(self._next_prefix) : -len(_NEXT_SUFFIX)]
            _auth_worker(st, *_worker_headers(raw_headers), worker_id)
            query = parse_qs(scope["query_string"].decode("latin-1"))
            poll_s = _query_number(query, "timeout", float, 0.0, None)
            max_tasks = _query_number(query, "max_tasks", int, 1, rxon.MAX_TASKS_PER_CALL)
            skills = query.get("available_skills", [None])[-1]
            return await _next_tasks(st, worker_id, skills, max_tasks, poll_s or 0.0, receive)
        if template in (rxon.ENDPOINT_TASK_RESULT, rxon.ENDPOINT_TASK_RESULTS):
            body = _json_object(await _read_body(receive))
            claimed = body.get("worker_id") if isinstance(body.get("worker_id"), str) else None
            worker_id, token = _auth_worker(st, *_worker_headers(raw_headers), claimed)
            if template == rxon.ENDPOINT_TASK_RESULT:
                return 200, await _task_result(st, worker_id, token, body)
            return 200, await _task_results(st, worker_id, token, body)
        # a blueprint's own submission route: authenticate before reading the body; the request and the
        # submission are counted against the client's quotas together
        client = _auth_client(st, _header(raw_headers, b"x-client-token"))
        raw = await _read_body(receive)
        try:
            request = CreateJobRequest.model_validate_json(raw)
        except ValidationError as exc:
            await _count(st, client)
            raise _body_error(exc) from None
        job_id = await _create_job(st, client, self.job_routes[template], request, counted=False)
        return 202, {"job_id": job_id, "status": "accepted"}


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    """One request header (``name`` lower-case; ASGI servers lower-case header names), or ``None``."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def _worker_headers(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """``X-Worker-ID`` and ``X-Worker-Token`` of a request, in one pass over its headers."""
    worker_id = token = None
    for key, value in headers:
        if key == b"x-worker-id":
            worker_id = value.decode("latin-1")
        elif key == b"x-worker-token":
            token = value.decode("latin-1")
    return worker_id, token


_dumps = wire_json.dumps


async def _read_body(receive: _Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = wire_json.loads(raw)
    except ValueError:
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _query_number(
    query: dict[str, list[str]], name: str, kind: type[float] | type[int], low: float, high: float | None
) -> Any:
    if name not in query:
        return None
    text = query[name][-1]
    try:
        value = kind(text)
    except ValueError:
        raise ApiError(422, f"{name}: not a number: {text!r}", field=name) from None
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ApiError(422, f"{name}: must be {bound}", field=name)
    return value


def _body_error(exc: ValidationError) -> ApiError:
    """The 422 FastAPI's handler would give for a body that does not validate."""
    err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in err.get("loc", ())]
    field = ".".join(loc) or None
    if err.get("type") == "json_invalid":
        return ApiError(422, f"JSON decode error: {err.get('msg')}")
    return ApiError(422, f"{field + ': ' if field else ''}{err.get('msg')}", field=field)


class _PodiumApp(FastAPI):
    """FastAPI behind :class:`_Front` (which is built by :func:`create_app`)."""

    front: _Front | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.front is not None:
            await self.front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def _fastapi(self, scope: Any, receive: Any, send: Any) -> None:
        await super().__call__(scope, receive, send)


def create_app(
    engine: OrchestratorEngine,
    settings: ServerSettings | None = None,
    *,
    manage_engine: bool = True,
) -> FastAPI:
    """Build the ASGI app around ``engine``.

    With ``manage_engine`` (the default) the app's lifespan starts and stops the engine. Raises
    :class:`~podium.errors.ConfigError` for a bad ``clients.toml``/``workers.toml``, before serving anything.
    """
    settings = settings or ServerSettings.load()
    st = ServerState(engine, settings, manage_engine=manage_engine)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await st.start()
        try:
            yield
        finally:
            await st.stop()

    endpoints = "\n".join(
        f"- `POST {job_path(d, settings.api_prefix)}`: blueprint **{d.name}**"
        for d in engine.blueprints.values()
        if d.api_endpoint
    )
    app = _PodiumApp(
        title="podium",
        version="0.1.0",
        description=(
            "Jobs (client API, `X-Client-Token`), remote workers (RXON, `X-Worker-Token`), public routes.\n\n"
            f"Blueprints:\n\n{endpoints or '(none registered)'}"
        ),
        docs_url=None,
        redoc_url=None,
        openapi_url="/_public/openapi.json",
        lifespan=lifespan,
    )
    app.state.podium = st

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            exc.body.model_dump(exclude_none=True), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or None
        body = ErrorBody(error=f"{field + ': ' if field else ''}{err.get('msg')}", field=field)
        return JSONResponse(body.model_dump(exclude_none=True), status_code=422)

    app.include_router(_public_router(st))
    app.include_router(_worker_router(st))
    if settings.enable_client_api:
        app.include_router(_client_router(st))
        _blueprint_routes(st, app)
    front = _Front(app._fastapi, st)
    if settings.enable_client_api:
        front.job_routes = {
            job_path(d, settings.api_prefix): d.name for d in engine.blueprints.values() if d.api_endpoint
        }
    app.front = front
    return app
