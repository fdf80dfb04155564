"""The client API (``/api``, ``X-Client-Token``): jobs, approvals, blueprints, workers, admin, job submission.

Owns the client endpoints, module-level functions reading the app's
:class:`~podium.server._state.ServerState` (``request.app.state.podium``), and :func:`client_router` /
:func:`add_blueprint_routes`, which place them under the settings' prefix; :func:`submit_job` is the one
submission path (the fast route of :mod:`podium.server.app` uses it too). Errors leave as exceptions for
:mod:`podium.server.errors`. It must not speak the worker protocol or serve public routes.

The endpoints carry no docstrings: FastAPI would publish them as OpenAPI descriptions (each route's
``summary=`` says what it does).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from podium.engine.context import ClientConfig as EngineClient
from podium.engine.definition import JobDefinition
from podium.engine.errors import BlueprintNotFoundError, InputValidationError, JobNotFoundError
from podium.engine.models import TERMINAL_STATUSES
from podium.engine.models import JobView as EngineJobView
from podium.server._state import RemoteWorker, ServerState
from podium.server.auth import request_admin, request_client
from podium.server.errors import TOO_LARGE, ApiError, errors_doc
from podium.server.quotas import QuotaExceeded
from podium.server.security import ClientConfig
from podium.server.settings import ServerSettings
from podium.wire import rxon
from podium.wire.jobs import (
    ApprovalRequest,
    ApprovalResponse,
    CancelResponse,
    CreateJobRequest,
    CreateJobResponse,
    HistoryItem,
    JobList,
    JobView,
    WorkerView,
)

__all__ = [
    "add_blueprint_routes",
    "client_router",
    "find_job",
    "job_out",
    "job_path",
    "may_see",
    "submit_job",
]

# Avtomatika's names for podium's statuses, where they differ.
_STATUS_OUT = {"waiting_for_approval": "waiting_for_human"}
_STATUS_IN = {v: k for k, v in _STATUS_OUT.items()}
_LIST_SCAN_PAGES = 20  # pages of other clients' jobs a listing reads past before it answers
_ACTIVE = ["pending", "running", "waiting_for_worker", "waiting_for_approval", "waiting_for_children"]


def job_path(definition: JobDefinition, api_prefix: str = "api") -> str:
    """Where a blueprint's jobs are created: ``/api/{version}/jobs/{endpoint}`` (no version: ``/api/jobs/...``)."""
    endpoint = (definition.api_endpoint or definition.name).strip("/")
    if not endpoint.startswith("jobs/"):
        endpoint = f"jobs/{endpoint}"
    prefix = f"/{api_prefix.strip('/')}" if api_prefix.strip("/") else ""
    version = f"/{definition.api_version}" if definition.api_version else ""
    return f"{prefix}{version}/{endpoint}"


# --- views ----------------------------------------------------------------------------------------


def job_out(st: ServerState, job: EngineJobView) -> dict[str, Any]:
    """A job as the client API shows it (``JobView``; more with ``DETAILED_API_RESPONSES``)."""
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


async def _worker_out(st: ServerState, w: RemoteWorker) -> dict[str, Any]:
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
        reputation=state.reputation if (state := await st.engine.worker_state(w.worker_id)) else None,
    ).model_dump(mode="json")


async def find_job(st: ServerState, job_id: str, client: ClientConfig | None = None) -> EngineJobView:
    """The job, as ``client`` may see it: a client reads and acts only on the jobs it created (and on jobs
    created without a client, in-process), unless it is an ``admin``; any other job is a 404 to it."""
    try:
        job = await st.engine.get_job(job_id)
    except JobNotFoundError:
        raise ApiError(404, f"job {job_id!r} not found") from None
    if client is not None and not may_see(client, job):
        raise ApiError(404, f"job {job_id!r} not found")
    return job


def may_see(client: ClientConfig, job: EngineJobView) -> bool:
    """Whether ``client`` may see ``job`` (see :func:`find_job`)."""
    owner = job.client_name
    return owner is None or owner == client.name or client.admin


# --- jobs -----------------------------------------------------------------------------------------


async def get_job(job_id: str, request: Request) -> dict[str, Any]:
    st: ServerState = request.app.state.podium
    return job_out(st, await find_job(st, job_id, await request_client(request)))


async def wait_job(
    request: Request, job_id: str, wait_s: float = Query(30.0, ge=0, le=300, alias="timeout")
) -> dict[str, Any]:
    st: ServerState = request.app.state.podium
    await find_job(st, job_id, await request_client(request))
    try:
        view = await st.engine.wait_for_job(job_id, timeout_s=wait_s)
    except TimeoutError:
        view = await find_job(st, job_id)
    return job_out(st, view)


async def cancel_job(job_id: str, request: Request) -> CancelResponse:
    st: ServerState = request.app.state.podium
    await find_job(st, job_id, await request_client(request))
    await st.engine.cancel_job(job_id, reason="cancelled through the API")
    return CancelResponse(job_id=job_id)


async def job_history(job_id: str, request: Request) -> list[HistoryItem]:
    st: ServerState = request.app.state.podium
    await find_job(st, job_id, await request_client(request))
    entries = await st.engine.job_history(job_id)
    return [HistoryItem(seq=e.seq, event=e.event, status=e.status, ts=e.ts, data=e.data) for e in entries]


async def _resolve(request: Request, job_id: str, decision: str, data: dict[str, Any]) -> ApprovalResponse:
    st: ServerState = request.app.state.podium
    await find_job(st, job_id, await request_client(request))
    await st.engine.resolve_approval(job_id, decision, data)
    return ApprovalResponse(job_id=job_id)


async def approval(job_id: str, request: Request, body: ApprovalRequest) -> Any:
    return await _resolve(request, job_id, body.decision, body.data)


async def approve(job_id: str, request: Request, data: dict[str, Any] | None = Body(None)) -> Any:
    return await _resolve(request, job_id, "approved", data or {})


async def reject(job_id: str, request: Request, data: dict[str, Any] | None = Body(None)) -> Any:
    return await _resolve(request, job_id, "rejected", data or {})


async def list_jobs(
    request: Request,
    status: str | None = None,
    blueprint: str | None = None,
    after: str | None = None,
    limit: int = Query(50, ge=1),
) -> dict[str, Any]:
    st: ServerState = request.app.state.podium
    client = await request_client(request)
    limit = min(limit, st.settings.max_page_size)
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
            if may_see(client, v):
                page.append(v)
                if len(page) == limit:
                    break
        more = cursor != views[-1].job_id  # read stopped before the last job fetched: there are more
        if len(page) == limit or not more:
            break
    return {"items": [job_out(st, v) for v in page], "next": cursor if more else None}


# --- blueprints, workers, admin -------------------------------------------------------------------


async def list_blueprints(request: Request) -> list[dict[str, Any]]:
    st: ServerState = request.app.state.podium
    await request_client(request)
    return [
        {**d.get_contract(), "path": job_path(d, st.settings.api_prefix)}
        for d in st.engine.blueprints.values()
        if d.api_endpoint
    ]


async def blueprint_graph(name: str, request: Request) -> PlainTextResponse:
    st: ServerState = request.app.state.podium
    await request_client(request)
    try:
        graph = st.engine.blueprint_graph(name)
    except BlueprintNotFoundError:  # the engine's message names what it looked in; this one, what was asked
        raise ApiError(404, f"blueprint {name!r} not found") from None
    return PlainTextResponse(graph, media_type="text/plain; charset=utf-8")


async def list_workers(request: Request) -> list[dict[str, Any]]:
    st: ServerState = request.app.state.podium
    await request_client(request)
    out = [await _worker_out(st, w) for w in list(st.workers.values())]
    # The store's registry adds in-process workers, and remote ones registered with another instance on
    # the same store (any instance answers for the whole deployment) while they are heard from.
    now, timeout = st.clock.now(), st.settings.worker_timeout_s
    for w in await st.engine.list_workers():
        if w.status == "offline" or w.worker_id in st.workers:
            continue
        if w.kind == "in_process" or now - w.last_seen <= timeout:
            view = WorkerView(
                worker_id=w.worker_id,
                worker_type=(w.info.get("worker_type") if w.kind != "in_process" else None) or w.kind,
                status=w.status,
                skills=sorted(w.skills),
                capacity=w.capacity,
                last_seen=w.last_seen,
            )
            out.append(view.model_dump(mode="json"))
    return out


async def reload_workers(request: Request) -> dict[str, Any]:
    await request_admin(request)
    st: ServerState = request.app.state.podium
    return {"status": "reloaded", "workers": st.worker_tokens.reload()}


async def command_worker(worker_id: str, command: str, request: Request) -> dict[str, Any]:
    await request_admin(request)
    st: ServerState = request.app.state.podium
    if command not in (rxon.COMMAND_DRAIN, rxon.COMMAND_SHUTDOWN):
        raise ApiError(422, f"unknown command {command!r} (drain, shutdown)", field="command")
    # queued in the store: the worker's next heartbeat carries it, whichever instance it reaches
    if not await st.engine.dispatch.command_worker(worker_id, {"command": command}):
        raise ApiError(404, f"worker {worker_id!r} not found")
    return {"status": "queued", "worker_id": worker_id, "command": command}


def client_router(settings: ServerSettings) -> APIRouter:
    """The client API's routes under ``settings.api_prefix`` (job submission: :func:`add_blueprint_routes`)."""
    prefix = f"/{settings.api_prefix.strip('/')}" if settings.api_prefix.strip("/") else ""
    jobs = f"{prefix}/v1/jobs"
    # The dependency authenticates before FastAPI validates any body: no token, no 422.
    r = APIRouter(
        tags=["jobs"],
        responses={**errors_doc(400, 401, 403, 404, 409, 422, 429), **TOO_LARGE},
        dependencies=[Depends(request_client)],
    )
    get, post = ["GET"], ["POST"]
    r.add_api_route(
        f"{jobs}/{{job_id}}",
        get_job,
        methods=get,
        response_model=JobView,
        summary="A job's status, state, progress, result",
    )
    r.add_api_route(
        f"{jobs}/{{job_id}}/wait",
        wait_job,
        methods=get,
        response_model=JobView,
        summary="Wait (long poll) for a job to end",
    )
    r.add_api_route(
        f"{jobs}/{{job_id}}/cancel",
        cancel_job,
        methods=post,
        response_model=CancelResponse,
        summary="Cancel a job",
    )
    r.add_api_route(
        f"{jobs}/{{job_id}}/history",
        job_history,
        methods=get,
        response_model=list[HistoryItem],
        summary="A job's history",
    )
    r.add_api_route(
        f"{jobs}/{{job_id}}/approval",
        approval,
        methods=post,
        response_model=ApprovalResponse,
        summary="Answer an approval",
    )
    r.add_api_route(
        f"{jobs}/{{job_id}}/approve",
        approve,
        methods=post,
        response_model=ApprovalResponse,
        summary="Approve a job",
    )
    r.add_api_route(
        f"{jobs}/{{job_id}}/reject",
        reject,
        methods=post,
        response_model=ApprovalResponse,
        summary="Reject a job",
    )
    r.add_api_route(
        jobs,
        list_jobs,
        methods=get,
        response_model=JobList,
        summary="Jobs, newest first, filtered and paginated",
    )
    r.add_api_route(
        f"{prefix}/v1/blueprints",
        list_blueprints,
        methods=get,
        summary="Registered blueprints and where to submit their jobs",
    )
    r.add_api_route(
        f"{prefix}/v1/blueprints/{{name}}/graph",
        blueprint_graph,
        methods=get,
        response_class=PlainTextResponse,
        summary="Mermaid graph",
    )
    r.add_api_route(
        f"{prefix}/v1/workers",
        list_workers,
        methods=get,
        response_model=list[WorkerView],
        summary="Registered executors: remote workers, and in-process ones (a workcell's) from the registry",
    )
    r.add_api_route(
        f"{prefix}/v1/admin/reload-workers",
        reload_workers,
        methods=post,
        tags=["admin"],
        summary="Reload workers.toml",
    )
    r.add_api_route(
        f"{prefix}/v1/admin/workers/{{worker_id}}/{{command}}",
        command_worker,
        methods=post,
        tags=["admin"],
        summary="Drain or shut down",
    )
    return r


# --- job submission -------------------------------------------------------------------------------


async def submit_job(
    st: ServerState, client: ClientConfig, blueprint: str, body: CreateJobRequest, *, counted: bool
) -> str:
    """Check the client's submission quotas and create the job; return its id. ``counted``: the request
    itself was already counted (else it is counted together with the submission, in one write)."""
    if body.policy is not None:
        limit = st.engine.config.MAX_POLICY_SIZE_BYTES
        if len(json.dumps(body.policy, separators=(",", ":"))) > limit:
            raise ApiError(
                422, f"policy is larger than MAX_POLICY_SIZE_BYTES ({limit} bytes)", field="policy"
            )
    if client.quotas.max_active_jobs is not None:
        active = await st.engine.count_jobs(status=_ACTIVE, client=client.name)
        try:
            st.quotas.check_active(client, active)
        except QuotaExceeded:
            if not counted:
                await st.quotas.count(client)  # a refused submission is still a request
            raise
    await st.quotas.count(client, request=not counted, submission=True)
    try:
        return await st.engine.create_job(
            blueprint,
            body.initial_data,
            webhook_url=body.webhook_url,
            dispatch_timeout=body.dispatch_timeout,
            result_timeout=body.result_timeout,
            client=EngineClient(token=client.name, plan=client.plan, params=dict(client.params)),
            policy=body.policy,
        )
    except InputValidationError as exc:  # the engine names the field inside initial_data; this, the body's
        field = f"initial_data.{exc.field}" if exc.field else "initial_data"
        raise ApiError(422, f"invalid initial_data for blueprint {blueprint!r}: {exc}", field=field) from None


def _definition_at(st: ServerState, request: Request, endpoint: str | None) -> JobDefinition:
    """The blueprint a generic submission route names, by its endpoint and version (404 for none)."""
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
    return definition


async def create_job(request: Request, body: CreateJobRequest, endpoint: str | None = None) -> JSONResponse:
    st: ServerState = request.app.state.podium
    client = await request_client(request)
    # A blueprint's own route (the ASGI front usually serves it first), or a generic one: find the blueprint.
    blueprint = st.job_routes.get(getattr(request.scope.get("route"), "path", ""))
    if blueprint is None:
        blueprint = _definition_at(st, request, endpoint).name
    job_id = await submit_job(st, client, blueprint, body, counted=True)
    return JSONResponse({"job_id": job_id, "status": "accepted"}, status_code=202)


_SUBMIT_ERRORS = errors_doc(400, 401, 404, 422, 429)
"""What a submission may be answered with besides 202 and 413 (404: no blueprint at a generic route)."""


def add_blueprint_routes(app: FastAPI, st: ServerState) -> None:
    """A submission route per blueprint with an API endpoint (its contract in OpenAPI), then the generic
    ones, which also reach blueprints registered after the app was built."""
    s = st.settings
    prefix = f"/{s.api_prefix.strip('/')}" if s.api_prefix.strip("/") else ""
    for definition in st.engine.blueprints.values():
        if not definition.api_endpoint:
            continue
        contract = definition.get_contract().get("input_schema")
        app.add_api_route(
            job_path(definition, s.api_prefix),
            create_job,
            methods=["POST"],
            status_code=202,
            response_model=CreateJobResponse,
            tags=["blueprints"],
            summary=f"Create a {definition.name} job",
            description=f"Starts blueprint **{definition.name}**. `initial_data` contract:\n\n```json\n"
            f"{contract}\n```",
            responses={**_SUBMIT_ERRORS, **TOO_LARGE},
            name=f"create_{definition.name}",
            dependencies=[Depends(request_client)],
        )
    app.add_api_route(
        f"{prefix}/{{version}}/jobs/{{endpoint:path}}",
        create_job,
        dependencies=[Depends(request_client)],
        methods=["POST"],
        status_code=202,
        response_model=CreateJobResponse,
        tags=["blueprints"],
        responses={**_SUBMIT_ERRORS, **TOO_LARGE},
        summary="Create a job (any versioned blueprint)",
        openapi_extra={
            "parameters": [{"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}]
        },
    )
    app.add_api_route(
        f"{prefix}/jobs/{{endpoint:path}}",
        create_job,
        dependencies=[Depends(request_client)],
        methods=["POST"],
        status_code=202,
        response_model=CreateJobResponse,
        tags=["blueprints"],
        responses={**_SUBMIT_ERRORS, **TOO_LARGE},
        summary="Create a job (any unversioned blueprint)",
    )
