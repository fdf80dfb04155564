"""The worker API (``/_worker``): Avtomatika's RXON protocol: register, heartbeat, deregister, long-poll for
tasks, results, events.

Owns the worker endpoints (module-level functions reading the app's
:class:`~podium.server._state.ServerState`), :func:`worker_router`, and the protocol's core steps that the
fast routes of :mod:`podium.server.app` share with them: :func:`next_tasks`, :func:`take_result`,
:func:`take_results` and :func:`task_wire`. Errors leave as exceptions for :mod:`podium.server.errors`. It
must not serve the client API or authenticate clients.

The endpoints carry no docstrings: FastAPI would publish them as OpenAPI descriptions (each route's
``summary=`` says what it does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from podium.engine.errors import JobNotFoundError, TaskNotFoundError
from podium.engine.models import Task
from podium.errors import InvalidInputError, NotFoundError
from podium.server._longpoll import wait_for_tasks
from podium.server._state import RemoteWorker, ServerState
from podium.server.auth import check_signature, request_worker
from podium.server.errors import TOO_LARGE, ApiError, errors_doc
from podium.wire import rxon

__all__ = [
    "RESULT_LANES",
    "known_worker",
    "next_tasks",
    "take_result",
    "take_results",
    "task_wire",
    "worker_router",
]

log = logging.getLogger("podium.server")

RESULT_LANES = 8
"""How many of a results batch's results are applied at once. Results of different jobs may still write one
record (the parent of several child jobs): it then sees at most this many version conflicts in a row, fewer
than the engine tries (its ``MAX_CONFLICT_RETRIES``)."""

Receive = Callable[[], Awaitable[Mapping[str, Any]]]


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _parse(model: type[BaseModel], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or None
        raise ApiError(422, f"invalid {model.__name__}: {field}: {err['msg']}", field=field) from None


def _claimed(body: dict[str, Any]) -> str | None:
    """The ``worker_id`` a message names, if it names one."""
    claimed = body.get("worker_id")
    return claimed if isinstance(claimed, str) else None


# --- registration and heartbeats ------------------------------------------------------------------


async def known_worker(st: ServerState, worker_id: str) -> RemoteWorker | None:
    """The remote worker as this instance knows it, or as it registered with any instance on the store (read
    back from the engine's registry and kept here); ``None`` if it is not registered (or left)."""
    worker = st.workers.get(worker_id)
    if worker is not None:
        return worker
    state = await st.engine.worker_state(worker_id)
    if state is None or state.status == "offline":
        return None
    worker = st.workers[worker_id] = RemoteWorker(
        worker_id=worker_id,
        worker_type=state.worker_type,
        skills={name: rxon.SkillInfo.model_validate(info) for name, info in state.skills.items()},
        capacity=state.capacity,
        registered_at=state.registered_at,
        last_seen=state.last_seen,
        status=state.status,
        hot_skills=sorted(state.hot),
        cost_per_skill=dict(state.costs) or None,
    )
    return worker


async def register(request: Request) -> dict[str, Any]:
    st: ServerState = request.app.state.podium
    body = await _json_body(request)
    worker_id, token = request_worker(request, _claimed(body))
    check_signature(st, body, worker_id, token)
    reg: rxon.WorkerRegistration = _parse(rxon.WorkerRegistration, body)
    skills = {s.name: s for s in reg.supported_skills or []}
    for name in reg.available_skills or []:
        skills.setdefault(name, rxon.SkillInfo(name=name))
    caps = reg.capabilities
    await st.engine.register_worker_record(
        worker_id,
        sorted(skills),
        capacity=reg.capacity or 1,
        kind="remote",
        info={
            "worker_type": reg.worker_type,
            "hostname": caps.hostname if caps else None,
            "cost_per_skill": caps.cost_per_skill if caps else None,
            "hot_skills": list(reg.hot_skills or []),
            # each skill's contract, so that every instance on the store can match tasks and check results
            "skill_infos": {name: skill.model_dump(exclude_none=True) for name, skill in skills.items()},
            # what a task's resource_requirements are matched against
            "resources": reg.resources.wire() if reg.resources else None,
            "installed_software": reg.installed_software,
            "installed_artifacts": [a.wire() for a in reg.installed_artifacts or ()] or None,
            "extra": caps.extra if caps else None,
        },
    )
    # this instance's view of it is the store's, as any other instance on the store will read it
    st.workers.pop(worker_id, None)
    if await known_worker(st, worker_id) is None:
        raise ApiError(409, f"worker {worker_id} left while registering: register again")
    st.metrics.workers.set(len(st.workers))
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


async def heartbeat(worker_id: str, request: Request) -> dict[str, Any]:
    st: ServerState = request.app.state.podium
    _, token = request_worker(request, worker_id)
    body = await _json_body(request) if await request.body() else {}
    worker = await known_worker(st, worker_id)
    if worker is None:
        raise ApiError(404, f"worker {worker_id} not found: register again")
    if body:
        check_signature(st, body, worker_id, token)
    hb: rxon.Heartbeat | None = _parse(rxon.Heartbeat, body) if body else None
    worker.last_seen = st.clock.now()
    if hb is not None:
        worker.status = hb.status
        worker.current_tasks = list(hb.current_tasks or [])
        if hb.hot_skills is not None:
            worker.hot_skills = list(hb.hot_skills)
        for skill in hb.supported_skills or []:
            worker.skills[skill.name] = skill
    try:
        answer = await st.engine.heartbeat_worker(
            worker_id,
            status=worker.status if hb is not None else "online",
            load=len(worker.current_tasks) if hb is not None else None,
            hot_skills=worker.hot_skills if hb is not None else None,
        )
    except NotFoundError:  # deregistered through another instance
        st.workers.pop(worker_id, None)
        raise ApiError(404, f"worker {worker_id} not found: register again") from None
    cancel = []
    for task_id in worker.current_tasks:
        with contextlib.suppress(NotFoundError):
            if await st.engine.is_task_cancelled(task_id):
                cancel.append(task_id)
                continue
            # A task still running here keeps its lease, however long it takes; one another instance handed
            # out is fenced on the holder its record names.
            delivered = st.delivered.get(task_id)
            if delivered is None:
                await st.engine.extend_task(task_id, None, worker_id=worker_id)
            elif delivered.worker_id == worker_id:
                await st.engine.extend_task(task_id, delivered.token)
    if answer.registered_at != worker.registered_at:  # it registered again, maybe through another instance
        st.workers.pop(worker_id, None)
        worker = await known_worker(st, worker_id) or worker
    commands, worker.commands = worker.commands, []
    commands += [rxon.WorkerCommand.model_validate(c) for c in answer.commands]
    reply = rxon.HeartbeatResponse(cancel_task_ids=cancel or None, commands=commands or None)
    return reply.model_dump(mode="json", exclude_none=True)


async def deregister(worker_id: str, request: Request) -> dict[str, Any]:
    st: ServerState = request.app.state.podium
    request_worker(request, worker_id)
    if st.workers.pop(worker_id, None) is None and await st.engine.worker_state(worker_id) is None:
        raise ApiError(404, f"worker {worker_id} not found")
    st.metrics.workers.set(len(st.workers))
    with contextlib.suppress(NotFoundError):
        await st.engine.heartbeat_worker(worker_id, status="offline")
    return {"status": "deregistered", "worker_id": worker_id}


# --- tasks ----------------------------------------------------------------------------------------


async def next_task(
    worker_id: str,
    request: Request,
    poll_s: float = Query(0.0, ge=0, alias="timeout"),
    available_skills: str | None = None,
    max_tasks: int | None = Query(None, ge=1, le=rxon.MAX_TASKS_PER_CALL),
) -> Response:
    request_worker(request, worker_id)
    st: ServerState = request.app.state.podium
    _, payload = await next_tasks(st, worker_id, available_skills, max_tasks, poll_s, request.receive)
    return Response(status_code=204) if payload is None else JSONResponse(payload)


async def task_result(request: Request) -> dict[str, Any]:
    body = await _json_body(request)
    worker_id, token = request_worker(request, _claimed(body))
    return await take_result(request.app.state.podium, worker_id, token, body)


async def task_results(request: Request) -> dict[str, Any]:
    body = await _json_body(request)
    worker_id, token = request_worker(request, _claimed(body))
    return await take_results(request.app.state.podium, worker_id, token, body)


async def worker_event(request: Request) -> dict[str, Any]:
    st: ServerState = request.app.state.podium
    body = await _json_body(request)
    worker_id, token = request_worker(request, _claimed(body))
    check_signature(st, body, worker_id, token)
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
        # the engine names the task and the argument; this names the event's task and where in the body
        except TaskNotFoundError:
            raise ApiError(404, f"task {task_id} not found") from None
        except InvalidInputError as exc:
            raise ApiError(422, str(exc), field="payload.progress") from None
    return {"status": "event_accepted"}


def worker_router() -> APIRouter:
    """The RXON routes (their paths are the protocol's, under ``/_worker``)."""
    r = APIRouter(
        tags=["workers (RXON)"],
        responses={**errors_doc(400, 401, 403, 404, 422, 429), **TOO_LARGE},
    )
    r.add_api_route(
        rxon.ENDPOINT_REGISTER,
        register,
        methods=["POST"],
        summary="Register a worker",
        response_model=rxon.RegisterResponse,
    )
    r.add_api_route(
        rxon.ENDPOINT_HEARTBEAT,
        heartbeat,
        methods=["PATCH"],
        summary="Heartbeat; the answer may carry commands",
    )
    r.add_api_route(rxon.ENDPOINT_HEARTBEAT, deregister, methods=["DELETE"], summary="Deregister a worker")
    r.add_api_route(
        rxon.ENDPOINT_TASK_NEXT,
        next_task,
        methods=["GET"],
        summary="Long-poll for the next task",
        responses={204: {}},
    )
    r.add_api_route(
        rxon.ENDPOINT_TASK_RESULT,
        task_result,
        methods=["POST"],
        summary="Submit a task's result",
        response_model=rxon.ResultResponse,
    )
    r.add_api_route(
        rxon.ENDPOINT_TASK_RESULTS,
        task_results,
        methods=["POST"],
        summary="Submit several results and take the next tasks (podium extension)",
        response_model=rxon.TaskResultBatchResponse,
    )
    r.add_api_route(
        rxon.ENDPOINT_EVENTS,
        worker_event,
        methods=["POST"],
        summary="Worker events (progress)",
        response_model=rxon.EventResponse,
    )
    return r


# --- the protocol's core steps (shared with the fast routes) --------------------------------------


def task_wire(task: Task, now: float) -> dict[str, Any]:
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


async def next_tasks(
    st: ServerState,
    worker_id: str,
    available_skills: str | None,
    max_tasks: int | None,
    poll_s: float,
    receive: Receive | None,
) -> tuple[int, Any]:
    """``GET .../tasks/next``: ``(200, TaskPayload)``, or ``(200, {"tasks": [...]})`` when ``max_tasks`` is
    given (podium extension), or ``(204, None)``. A long poll (``poll_s`` > 0) ends early when ``receive``
    reports that the worker hung up."""
    worker = st.workers.get(worker_id) or await known_worker(st, worker_id)
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
        tasks = await wait_for_tasks(st.engine, receive, worker_id, skills, limit, wait_s)
        now = st.clock.now()
    if not tasks:
        return 204, None
    for task in tasks:
        st.delivered[task.task_id] = task
    wires = [task_wire(t, now) for t in tasks]
    if st.tracing is not None:  # the task's span, named from its ids (podium.ops.tracing)
        for wire in wires:
            wire["tracing_context"] = {"traceparent": st.tracing.traceparent(wire["job_id"], wire["task_id"])}
    return 200, wires[0] if max_tasks is None else {"tasks": wires}


async def take_result(st: ServerState, worker_id: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /_worker/tasks/result`` once the worker is authenticated."""
    check_signature(st, body, worker_id, token)
    result: rxon.TaskResult = _parse(rxon.TaskResult, body)
    return await _apply_result(st, worker_id, result)


async def take_results(st: ServerState, worker_id: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /_worker/tasks/results`` (podium extension): apply each result as ``tasks/result`` would (side by
    side), and lease up to ``next.max_tasks`` new tasks without waiting, alongside; should a result fail, the
    batch fails and the tasks leased are handed back."""
    check_signature(st, body, worker_id, token)
    batch: rxon.TaskResultBatch = _parse(rxon.TaskResultBatch, body)
    for i, result in enumerate(batch.results):
        if result.worker_id is not None and result.worker_id != worker_id:
            st.metrics.auth_failures.labels("worker").inc()
            raise ApiError(
                403, f"worker id mismatch: {result.worker_id} vs {worker_id}", field=f"results.{i}.worker_id"
            )
    # A worker the server forgot gets no tasks here; its next poll answers 404 and it registers again.
    taking: asyncio.Task[tuple[int, Any]] | None = None
    if batch.next is not None and batch.next.max_tasks and await known_worker(st, worker_id) is not None:
        skills = ",".join(batch.next.available_skills) if batch.next.available_skills is not None else None
        # The take does not wait for the results: the worker asked for its free slots, and the store
        # calls of both go out together (a round trip less per batch).
        taking = asyncio.get_running_loop().create_task(
            next_tasks(st, worker_id, skills, batch.next.max_tasks, 0.0, None)
        )
    try:
        replies = await _apply_results(st, worker_id, batch.results)
    except BaseException:
        if taking is not None:
            await _give_back(st, taking)
        raise
    tasks: list[dict[str, Any]] = []
    if taking is not None:
        status, payload = await taking
        if status == 200:
            tasks = payload["tasks"]
    return {"results": replies, "tasks": tasks}


async def _give_back(st: ServerState, taking: asyncio.Task[tuple[int, Any]]) -> None:
    """The batch failed (or its caller left) after its take started: let the take finish (cancelled midway,
    what it leased would wait for its leases to expire), then hand its tasks back at once."""
    try:
        status, payload = await asyncio.shield(taking)
    except Exception:
        return
    if status != 200:
        return
    for wire in payload["tasks"]:
        task = st.delivered.pop(wire["task_id"], None)
        if task is not None:
            with contextlib.suppress(Exception):
                await st.engine.release_task(task.task_id, task.token)


async def _apply_results(
    st: ServerState, worker_id: str, results: list[rxon.TaskResult]
) -> list[dict[str, Any]]:
    """Apply a batch's results, those of different jobs side by side (at most :data:`RESULT_LANES` at once):
    each is its own engine write, so the batch costs about one store round trip rather than one per result.
    Results of one job (parallel tasks) go in turn, in the batch's order: they write the same job record, and
    side by side all but one would fail its version check and try again."""
    if len(results) == 1:
        return [await _apply_result(st, worker_id, results[0])]
    replies: list[dict[str, Any]] = [{}] * len(results)
    by_job: dict[str, list[int]] = {}
    for i, result in enumerate(results):
        by_job.setdefault(result.job_id, []).append(i)
    lanes: list[list[int]] = [[] for _ in range(min(RESULT_LANES, len(by_job)))]
    for n, indexes in enumerate(by_job.values()):
        lanes[n % len(lanes)] += indexes
    scoring = asyncio.Lock()

    async def apply_in_turn(indexes: list[int]) -> None:
        for i in indexes:
            replies[i] = await _apply_result(st, worker_id, results[i], scoring)

    out = await asyncio.gather(*map(apply_in_turn, lanes), return_exceptions=True)
    for failed in out:
        if isinstance(failed, BaseException):
            raise failed
    return replies


def _ignored(reason: str) -> dict[str, Any]:
    """``rxon.ResultResponse(status="ignored", reason=...)`` as sent (built directly on the hot path)."""
    return {"status": "ignored", "reason": reason}


async def _apply_result(
    st: ServerState, worker_id: str, result: rxon.TaskResult, scoring: asyncio.Lock | None = None
) -> dict[str, Any]:
    """Apply one result; the :class:`rxon.ResultResponse` to send, as a dict. ``scoring``: held while the
    worker is scored (a batch's results score their one worker in turn: side by side, its record's version
    check would turn all but one away)."""
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
        worker = await known_worker(st, worker_id)
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
    except (TaskNotFoundError, JobNotFoundError):  # not an error to the worker: a result for nothing
        return _ignored(rxon.IGNORED_REASON_NOT_FOUND)
    st.delivered.pop(result.task_id, None)
    if outcome == "ignored":
        return _ignored(rxon.IGNORED_REASON_STALE)
    if scoring is None:
        await st.engine.score_worker(worker_id, _reputation_outcome(status, error))
    else:
        async with scoring:
            await st.engine.score_worker(worker_id, _reputation_outcome(status, error))
    return {"status": "accepted", "message": outcome}


def _reputation_outcome(status: str, error: Mapping[str, Any] | None) -> str | None:
    """What a result says of its worker's reputation: a success, a permanent failure, a contract violation;
    ``None`` for anything else (a transient error says nothing about the worker)."""
    code = (error or {}).get("code")
    if code == rxon.ERROR_CODE_CONTRACT_VIOLATION:
        return "contract_violation"
    if status == rxon.TASK_STATUS_SUCCESS:
        return "success"
    if code == rxon.ERROR_CODE_PERMANENT:
        return "failure"
    return None
