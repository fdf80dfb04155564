"""The pull-worker SDK: register, heartbeat, long-poll, run handlers, report progress and results."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_type_hints

from pydantic import BaseModel, ValidationError

from podium.blobs import BlobStore, S3Settings, TaskFiles
from podium.clock import Clock, system_clock
from podium.errors import PodiumError
from podium.ids import new_ulid_str
from podium.wire import rxon
from podium.wire.http import HttpClient, HttpError, Response

__all__ = ["TaskContext", "TaskFailed", "Worker", "WorkerAuthError", "WorkerState"]

log = logging.getLogger("podium.worker")

Handler = Callable[..., Awaitable[Any]]
WorkerState = Literal["created", "running", "draining", "stopped"]
_STATES: dict[str, frozenset[str]] = {
    "created": frozenset({"running", "stopped"}),
    "running": frozenset({"draining", "stopped"}),
    "draining": frozenset({"stopped"}),
    "stopped": frozenset(),
}


class WorkerAuthError(PodiumError):
    """The server refused the worker's token (401/403): retrying will not help."""


class TaskFailed(Exception):
    """Raise from a handler to end the task with ``status`` (default ``failure``) and an error code."""

    def __init__(
        self,
        message: str,
        *,
        code: str = rxon.ERROR_CODE_PERMANENT,
        status: str = rxon.TASK_STATUS_FAILURE,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.code, self.message, self.status, self.data = code, message, status, data
        super().__init__(f"{code}: {message}")


@dataclass(slots=True)
class TaskContext:
    """What a handler may ask for as ``ctx``: the task's ids, a progress reporter and the W3C ``traceparent``
    the server sent in the task's ``tracing_context`` (``None`` when it sent none)."""

    task_id: str
    job_id: str
    task_type: str
    attempt: int
    deadline: float | None
    metadata: dict[str, Any]
    _worker: Worker
    traceparent: str | None = None

    async def progress(self, progress: float, message: str = "") -> None:
        """Report progress (0-100) and a status line; shown on the job. Never raises."""
        await self._worker._send_progress(self, progress, message)


_otel: Any = None  # the opentelemetry API modules once looked up; False: not installed


def _otel_api() -> Any:
    """``(trace, propagator)`` of opentelemetry-api, imported on first use; ``None`` without it."""
    global _otel
    if _otel is None:
        try:
            from opentelemetry import trace
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        except ImportError:
            _otel = False
        else:
            _otel = (trace, TraceContextTextMapPropagator())
    return _otel or None


@contextlib.contextmanager
def _skill_span(tracer_provider: Any, payload: rxon.TaskPayload, traceparent: str | None) -> Iterator[Any]:
    """The span a skill runs in (current while it runs), a child of the task's ``traceparent``; yields
    ``None`` (and does nothing) without opentelemetry."""
    api = _otel_api()
    if api is None:
        yield None
        return
    trace, propagator = api
    parent = propagator.extract({"traceparent": traceparent}) if traceparent else None
    tracer = trace.get_tracer("podium.worker", tracer_provider=tracer_provider)
    attributes = {
        "podium.job_id": payload.job_id,
        "podium.task_id": payload.task_id,
        "podium.task_type": payload.type,
    }
    with tracer.start_as_current_span(
        f"skill {payload.type}", context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
    ) as span:
        yield span


def _end_span(span: Any, result: dict[str, Any]) -> None:
    """Mark ``span`` failed when the skill's result is not a success."""
    if span is None or result.get("status") == rxon.TASK_STATUS_SUCCESS:
        return
    from opentelemetry.trace import Status, StatusCode

    error = result.get("error") or {}
    span.set_attribute("podium.status", str(result.get("status")))
    span.set_status(Status(StatusCode.ERROR, f"{error.get('code', '')}: {error.get('message', '')}"))


@dataclass(slots=True)
class _Skill:
    name: str
    handler: Handler
    info: rxon.SkillInfo
    params_model: type[BaseModel] | None
    inject: frozenset[str]


@dataclass(slots=True)
class _Running:
    task: asyncio.Task[None]
    payload: rxon.TaskPayload
    cancelled_by_server: bool = False


@dataclass(slots=True)
class _Outgoing:
    """A result waiting to be sent; ``sent`` resolves once the server answered (or it was given up)."""

    payload: rxon.TaskPayload
    body: dict[str, Any]
    sent: asyncio.Future[None]


class _Unsupported(Exception):
    """The server does not know podium's batch routes (an Avtomatika server): use the plain protocol."""


@dataclass(slots=True)
class _Backoff:
    initial_s: float
    max_s: float
    current: float = 0.0
    history: list[float] = field(default_factory=list)

    def next(self) -> float:
        self.current = min(self.max_s, self.current * 2 if self.current else self.initial_s)
        delay = self.current * (0.5 + random.random() / 2)
        self.history.append(delay)
        del self.history[:-50]
        return delay

    def reset(self) -> None:
        self.current = 0.0


def _raise_for_status(response: Response) -> None:
    if response.status_code >= 400:
        raise HttpError(f"HTTP {response.status_code}: {response.text[:200]}")


def _schema_of(annotation: Any) -> dict[str, Any] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.model_json_schema()
    return None


class _S3Environment:
    """Avtomatika-worker's S3 settings from the environment (``S3_ENDPOINT_URL``, ``S3_ACCESS_KEY``, ...)."""

    def __getattr__(self, name: str) -> str:
        if name.startswith("S3_"):
            return os.environ.get(name, "")
        raise AttributeError(name)


class Worker:
    """A remote worker speaking the RXON protocol to a podium (or Avtomatika) server.

    ::

        worker = Worker(worker_id="gpu-1", server_url="http://127.0.0.1:8080", token="...", capacity=4)

        @worker.task("video_transcoding", output_schema={"type": "object", "required": ["path"]})
        async def transcode(params: dict, ctx: TaskContext) -> dict:
            await ctx.progress(50, "half way")
            return {"path": "/out.mp4"}

        worker.run()            # blocks; SIGTERM/SIGINT drain gracefully

    Unset ``worker_id``, ``server_url`` and ``token`` come from ``WORKER_ID``, ``ORCHESTRATOR_URL`` and
    ``WORKER_TOKEN``, as for Avtomatika's workers. A handler's parameters are injected by name: ``params``
    (a dict, or a pydantic model it is validated into), ``ctx`` / ``context`` (:class:`TaskContext`),
    ``task_id``, ``job_id``, ``send_progress``, and ``task_files`` (the job's files on S3,
    :class:`podium.blobs.TaskFiles`, when ``s3=`` or Avtomatika's ``S3_ENDPOINT_URL``/``S3_ACCESS_KEY``/
    ``S3_SECRET_KEY``/``S3_DEFAULT_BUCKET`` environment is set; ``None`` otherwise; its local folder under
    ``TASK_FILES_DIR`` is removed when the task ends). With opentelemetry-api installed a handler runs inside a
    span ``skill <task type>``, a child of the W3C ``traceparent`` the server sent with the task (also
    ``ctx.traceparent``), from ``tracer_provider`` (default: OpenTelemetry's global one). It returns the result data (a dict or a pydantic model), or
    a full ``{"status", "data", "error"}`` dict; raising :class:`TaskFailed` ends the task with its code,
    any other exception with ``TRANSIENT_ERROR`` (retried by the server).
    """

    def __init__(
        self,
        *,
        worker_id: str | None = None,
        server_url: str | None = None,
        token: str | None = None,
        worker_type: str = "podium-worker",
        capacity: int = 1,
        cost_per_skill: dict[str, float] | None = None,
        hot_skills: list[str] | None = None,
        heartbeat_interval_s: float = 10.0,
        poll_timeout_s: float = 20.0,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 10.0,
        drain_timeout_s: float = 30.0,
        sign_messages: bool = True,
        clock: Clock | None = None,
        s3: S3Settings | None = None,
        task_files_dir: str | None = None,
        tracer_provider: Any = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.worker_id = worker_id or os.environ.get("WORKER_ID") or f"worker-{new_ulid_str().lower()}"
        self.server_url = (
            server_url or os.environ.get("ORCHESTRATOR_URL") or os.environ.get("PODIUM_SERVER_URL") or ""
        ).rstrip("/")
        self.token = token if token is not None else os.environ.get("WORKER_TOKEN", "")
        self.worker_type = worker_type
        self.capacity = capacity
        self.cost_per_skill = dict(cost_per_skill or {})
        self.hot_skills = set(hot_skills or [])
        self.heartbeat_interval_s = heartbeat_interval_s
        self.poll_timeout_s = poll_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.sign_messages = sign_messages
        self.clock = clock or system_clock
        self._skills: dict[str, _Skill] = {}
        self._running: dict[str, _Running] = {}
        self._state: WorkerState = "created"
        self._http: HttpClient | None = None
        self._registered = asyncio.Event()
        self._stop_polling = asyncio.Event()
        self._stopped = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []
        self._pollers: list[asyncio.Task[None]] = []
        self._spawned: set[asyncio.Task[None]] = set()
        self._backoff = _Backoff(backoff_initial_s, backoff_max_s)
        self._fatal: BaseException | None = None
        settings = s3 if s3 is not None else S3Settings.from_config(_S3Environment())
        self._blobs = BlobStore(settings) if settings is not None else None
        self.task_files_dir = Path(
            task_files_dir
            or os.environ.get("TASK_FILES_DIR")
            or Path(tempfile.gettempdir()) / "podium-task-files"
        )
        self.tracer_provider = tracer_provider
        self._executing = 0
        """Handlers running now: ``capacity - _executing - _reserved`` slots are free."""
        self._reserved = 0
        """Tasks the poll in flight may bring."""
        self._slots_changed = asyncio.Event()
        self._outbox: list[_Outgoing] = []
        self._outbox_ready = asyncio.Event()
        self._flushing = False
        self._batch_routes = True
        """Whether the server speaks podium's batch extension; turned off at its first 404/405."""
        self.completed = 0

    # --- declaring skills -------------------------------------------------------------------------

    def task(
        self,
        name: str,
        *,
        input_schema: dict[str, Any] | type[BaseModel] | None = None,
        output_schema: dict[str, Any] | type[BaseModel] | None = None,
        description: str | None = None,
        version: str | None = None,
        output_statuses: list[str] | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register an async handler for the task type ``name`` (with optional contracts)."""

        def decorator(func: Handler) -> Handler:
            if not inspect.iscoroutinefunction(func):
                raise TypeError(f"handler for {name!r} must be an async function")
            sig = inspect.signature(func)
            try:
                hints = get_type_hints(func)
            except Exception:
                hints = {}
            params_ann = hints.get("params")
            params_model = (
                params_ann if isinstance(params_ann, type) and issubclass(params_ann, BaseModel) else None
            )
            in_schema = _schema_of(input_schema) if isinstance(input_schema, type) else input_schema
            out_schema = _schema_of(output_schema) if isinstance(output_schema, type) else output_schema
            info = rxon.SkillInfo(
                name=name,
                type=name,
                description=description or inspect.cleandoc(func.__doc__ or "") or None,
                version=version,
                input_schema=in_schema or _schema_of(params_model),
                output_schema=out_schema or _schema_of(hints.get("return")),
                output_statuses=output_statuses,
            )
            self._skills[name] = _Skill(name, func, info, params_model, frozenset(sig.parameters))
            return func

        return decorator

    # also spelled like Avtomatika's SDK
    skill = task

    @property
    def state(self) -> WorkerState:
        return self._state

    @property
    def running_tasks(self) -> list[str]:
        return list(self._running)

    def _set_state(self, new: WorkerState) -> None:
        if new not in _STATES[self._state]:
            raise RuntimeError(f"worker cannot go from {self._state} to {new}")
        self._state = new

    # --- lifecycle --------------------------------------------------------------------------------

    def run(self) -> None:
        """Run until SIGTERM/SIGINT (then drain) or a shutdown command; blocking."""
        asyncio.run(self.serve(install_signal_handlers=True))

    async def serve(self, *, install_signal_handlers: bool = False) -> None:
        """Start, then wait until the worker has stopped (after a drain, a shutdown command or :meth:`stop`)."""
        await self.start()
        if install_signal_handlers:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, lambda: self._spawn(self.drain()))
        await self.wait_stopped()

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect, register (retrying with backoff while the server is away) and start polling."""
        if not self.server_url:
            raise ValueError("no server URL: pass server_url= or set ORCHESTRATOR_URL")
        if not self._skills:
            raise ValueError("the worker has no task handlers")
        self._set_state("running")
        self._http = HttpClient(
            self.server_url,
            headers={
                rxon.AUTH_HEADER_WORKER: self.token,
                rxon.AUTH_HEADER_WORKER_ID: self.worker_id,
                rxon.PROTOCOL_VERSION_HEADER: rxon.PROTOCOL_VERSION,
            },
            timeout_s=10.0,
            max_connections=self.capacity + 4,
        )
        self._background.append(asyncio.create_task(self._register_loop(), name=f"{self.worker_id}-register"))
        self._background.append(
            asyncio.create_task(self._heartbeat_loop(), name=f"{self.worker_id}-heartbeat")
        )
        self._background.append(asyncio.create_task(self._flush_loop(), name=f"{self.worker_id}-results"))
        self._pollers = [asyncio.create_task(self._poll_loop(), name=f"{self.worker_id}-poll")]

    async def wait_registered(self, timeout_s: float | None = None) -> None:
        """Wait until the server has accepted the registration."""
        await self.clock.wait_for(self._registered.wait(), timeout_s)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()
        if self._fatal is not None:
            raise self._fatal

    async def drain(self) -> None:
        """Stop taking tasks, let running ones finish (up to ``drain_timeout_s``), deregister, stop."""
        if self._state != "running":
            await self._stopped.wait()
            return
        self._set_state("draining")
        log.info("worker %s draining (%d running)", self.worker_id, len(self._running), extra=self._ids())
        self._stop_polling.set()
        for poller in self._pollers:
            poller.cancel()
        await asyncio.gather(*self._pollers, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._heartbeat_once()  # tell the server we are draining
        tasks = [r.task for r in self._running.values()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.drain_timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._finish(deregister=True)

    async def stop(self) -> None:
        """Stop at once: cancel running tasks (their leases expire and the server offers them again)."""
        if self._state == "stopped":
            return
        if self._state == "created":
            self._set_state("stopped")
            self._stopped.set()
            return
        if self._state == "running":
            self._set_state("draining")
        self._stop_polling.set()
        for run in list(self._running.values()):
            run.task.cancel()
        for poller in self._pollers:
            poller.cancel()
        await asyncio.gather(
            *self._pollers, *(r.task for r in self._running.values()), return_exceptions=True
        )
        await self._finish(deregister=False)

    async def _finish(self, *, deregister: bool) -> None:
        if self._state == "stopped":
            return
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if deregister and self._http is not None and self._registered.is_set():
            with contextlib.suppress(HttpError):
                await self._http.delete(
                    rxon.ENDPOINT_HEARTBEAT.format(worker_id=self.worker_id), timeout_s=5.0
                )
        if self._http is not None:
            await self._http.aclose()
        self._set_state("stopped")
        self._stopped.set()
        log.info("worker %s stopped", self.worker_id, extra=self._ids())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    def _ids(self, **more: str) -> dict[str, str]:
        return {"worker_id": self.worker_id, **more}

    # --- messages ---------------------------------------------------------------------------------

    def _signed(self, body: dict[str, Any]) -> dict[str, Any]:
        body["timestamp"] = int(self.clock.now())
        if self.sign_messages and self.token:
            body["security"] = {
                "signature": rxon.sign_payload(body, self.token),
                "signer_id": self.worker_id,
            }
        return body

    def _check_auth(self, response: Response) -> None:
        if response.status_code in (401, 403):
            raise WorkerAuthError(
                f"server refused worker {self.worker_id}: HTTP {response.status_code} {response.text[:200]}"
            )

    def _registration(self) -> dict[str, Any]:
        skills = [s.info for s in self._skills.values()]
        reg = rxon.WorkerRegistration(
            worker_id=self.worker_id,
            worker_type=self.worker_type,
            supported_skills=skills,
            available_skills=[s.name for s in skills],
            hot_skills=sorted(self.hot_skills) or None,
            capabilities=rxon.WorkerCapabilities(
                hostname=socket.gethostname(), cost_per_skill=self.cost_per_skill or None
            ),
            capacity=self.capacity,
        )
        return self._signed(reg.wire())

    async def _register_once(self) -> None:
        assert self._http is not None
        response = await self._http.post(rxon.ENDPOINT_REGISTER, json=self._registration())
        self._check_auth(response)
        _raise_for_status(response)
        self._backoff.reset()
        self._registered.set()
        log.info("worker %s registered with %s", self.worker_id, self.server_url, extra=self._ids())

    async def _register_loop(self) -> None:
        backoff = _Backoff(self._backoff.initial_s, self._backoff.max_s)
        while True:
            try:
                await self._register_once()
                return
            except WorkerAuthError as exc:
                await self._die(exc)
                return
            except HttpError as exc:
                delay = backoff.next()
                log.warning(
                    "worker %s: cannot register (%s); retry in %.2f s",
                    self.worker_id,
                    exc,
                    delay,
                    extra=self._ids(),
                )
                await self.clock.sleep(delay)

    async def _die(self, exc: BaseException) -> None:
        log.error("worker %s: %s", self.worker_id, exc, extra=self._ids())
        self._fatal = exc
        self._spawn(self.stop())

    def _status(self) -> str:
        if self._state == "draining":
            return "draining"
        if len(self._running) >= self.capacity:
            return "full"
        return "busy" if self._running else "idle"

    async def _heartbeat_once(self) -> None:
        assert self._http is not None
        hb = rxon.Heartbeat(
            worker_id=self.worker_id,
            status=self._status(),
            current_tasks=list(self._running),
            available_skills=list(self._skills) if self._state == "running" else [],
            hot_skills=sorted(self.hot_skills) or None,
        )
        response = await self._http.patch(
            rxon.ENDPOINT_HEARTBEAT.format(worker_id=self.worker_id), json=self._signed(hb.wire())
        )
        if response.status_code == 404:
            log.warning(
                "worker %s: the server forgot us; registering again", self.worker_id, extra=self._ids()
            )
            self._registered.clear()
            await self._register_once()
            return
        self._check_auth(response)
        _raise_for_status(response)
        await self._obey(rxon.HeartbeatResponse.model_validate(response.json() or {}))

    async def _obey(self, reply: rxon.HeartbeatResponse) -> None:
        commands = list(reply.commands or [])
        commands += [
            rxon.WorkerCommand(command=rxon.COMMAND_CANCEL_TASK, task_id=t)
            for t in reply.cancel_task_ids or []
        ]
        for command in commands:
            if command.command == rxon.COMMAND_CANCEL_TASK and command.task_id:
                run = self._running.get(command.task_id)
                if run is not None and not run.task.done():
                    log.info(
                        "cancelling task %s on the server's order",
                        command.task_id,
                        extra=self._ids(task_id=command.task_id),
                    )
                    run.cancelled_by_server = True
                    run.task.cancel()
            elif command.command in (rxon.COMMAND_DRAIN, rxon.COMMAND_SHUTDOWN):
                self._spawn(self.drain())
            else:
                log.warning("unknown command %r from the server", command.command, extra=self._ids())

    async def _heartbeat_loop(self) -> None:
        await self._registered.wait()
        backoff = _Backoff(self._backoff.initial_s, self._backoff.max_s)
        while True:
            try:
                await self._heartbeat_once()
                backoff.reset()
                delay = self.heartbeat_interval_s
            except WorkerAuthError as exc:
                await self._die(exc)
                return
            except (HttpError, ValidationError, ValueError) as exc:
                delay = backoff.next()
                log.warning(
                    "worker %s: heartbeat failed (%s); retry in %.2f s",
                    self.worker_id,
                    exc,
                    delay,
                    extra=self._ids(),
                )
            await self.clock.sleep(delay)

    # --- polling and running ----------------------------------------------------------------------

    def _free_slots(self) -> int:
        if self._state != "running":
            return 0
        return self.capacity - self._executing - self._reserved

    async def _poll_loop(self) -> None:
        """Ask for as many tasks as there are free slots (one long poll at a time). While results are on
        their way, the batch that carries them asks for the next tasks instead."""
        await self._registered.wait()
        assert self._http is not None
        url = rxon.ENDPOINT_TASK_NEXT.format(worker_id=self.worker_id)
        while not self._stop_polling.is_set():
            free = self._free_slots()
            if free <= 0 or self._outbox or (self._flushing and self._batch_routes):
                self._slots_changed.clear()
                await self._slots_changed.wait()
                continue
            params = {"timeout": str(self.poll_timeout_s), "available_skills": ",".join(self._skills)}
            if self._batch_routes:
                params["max_tasks"] = str(free)
            self._reserved = free
            try:
                response = await self._http.get(url, params=params, timeout_s=self.poll_timeout_s + 10.0)
            except HttpError as exc:
                delay = self._backoff.next()
                log.warning(
                    "worker %s: poll failed (%s); retry in %.2f s",
                    self.worker_id,
                    exc,
                    delay,
                    extra=self._ids(),
                )
                await self.clock.sleep(delay)
                continue
            finally:
                self._reserved = 0
            if response.status_code == 204:
                self._backoff.reset()
                continue
            if response.status_code in (401, 403):
                await self._die(
                    WorkerAuthError(f"server refused worker {self.worker_id}: {response.text[:200]}")
                )
                return
            if response.status_code == 404:
                self._registered.clear()
                with contextlib.suppress(HttpError):
                    await self._register_once()
                await self._registered.wait()
                continue
            if response.status_code == 422 and "max_tasks" in params:
                self._batch_routes = False  # a server that refuses the extension's parameter
                continue
            if response.status_code >= 300:
                delay = self._backoff.next()
                log.warning(
                    "worker %s: poll answered HTTP %d; retry in %.2f s",
                    self.worker_id,
                    response.status_code,
                    delay,
                    extra=self._ids(),
                )
                await self.clock.sleep(delay)
                continue
            self._backoff.reset()
            body = response.json()
            # podium answers {"tasks": [...]} to max_tasks; a plain RXON server sends one payload
            self._start_tasks(body["tasks"] if isinstance(body, dict) and "tasks" in body else [body])

    def _start_tasks(self, payloads: list[Any]) -> None:
        for raw in payloads:
            try:
                payload = rxon.TaskPayload.model_validate(raw)
            except ValidationError as exc:
                log.error(
                    "worker %s: malformed task from the server: %s", self.worker_id, exc, extra=self._ids()
                )
                continue
            self._executing += 1
            task = asyncio.create_task(self._run_task(payload))
            self._running[payload.task_id] = _Running(task, payload)

    def _arguments(self, skill: _Skill, payload: rxon.TaskPayload, ctx: TaskContext) -> dict[str, Any]:
        params: Any = dict(payload.params or {})
        if skill.params_model is not None:
            params = skill.params_model.model_validate(params)

        async def send_progress(*args: Any, **kwargs: Any) -> None:
            # Avtomatika's form: send_progress(task_id, job_id, progress, message="")
            progress = kwargs.get("progress", args[2] if len(args) > 2 else args[0] if args else 0)
            message = kwargs.get("message", args[3] if len(args) > 3 else "")
            await ctx.progress(float(progress), str(message))

        available = {
            "params": params,
            "ctx": ctx,
            "context": ctx,
            "task_id": payload.task_id,
            "job_id": payload.job_id,
            "send_progress": send_progress,
            "metadata": payload.metadata or {},
        }
        if "task_files" in skill.inject:
            available["task_files"] = self._task_files(payload)
        return {k: v for k, v in available.items() if k in skill.inject}

    def _task_files(self, payload: rxon.TaskPayload) -> TaskFiles | None:
        if self._blobs is None:
            return None
        return TaskFiles(self._blobs, payload.job_id, self.task_files_dir / payload.task_id)

    async def _run_task(self, payload: rxon.TaskPayload) -> None:
        ids = self._ids(task_id=payload.task_id, job_id=payload.job_id)
        skill = self._skills.get(payload.type)
        ctx = TaskContext(
            payload.task_id,
            payload.job_id,
            payload.type,
            int((payload.metadata or {}).get("attempt", 1)),
            float(payload.deadline) if payload.deadline else None,
            dict(payload.metadata or {}),
            self,
            (payload.tracing_context or {}).get("traceparent"),
        )
        result: dict[str, Any]
        executing = True
        spans = (
            contextlib.ExitStack()
        )  # the skill's span: ends once its result is known, or with an exception
        span = spans.enter_context(_skill_span(self.tracer_provider, payload, ctx.traceparent))
        try:
            try:
                if skill is None:
                    raise TaskFailed(f"this worker has no handler for {payload.type!r}")
                try:
                    kwargs = self._arguments(skill, payload, ctx)
                except ValidationError as exc:
                    raise TaskFailed(str(exc), code=rxon.ERROR_CODE_INVALID_INPUT) from None
                value = await skill.handler(**kwargs)
                result = self._result_of(value)
            except TaskFailed as exc:
                result = {
                    "status": exc.status,
                    "data": exc.data,
                    "error": {"code": exc.code, "message": exc.message},
                }
            except asyncio.CancelledError:
                run = self._running.get(payload.task_id)
                if run is not None and run.cancelled_by_server:
                    self._executing, executing = self._executing - 1, False
                    await self._submit(payload, {"status": rxon.TASK_STATUS_CANCELLED})
                raise
            except Exception as exc:
                log.exception("task %s failed", payload.task_id, extra=ids)
                result = {
                    "status": rxon.TASK_STATUS_FAILURE,
                    "error": {"code": rxon.ERROR_CODE_TRANSIENT, "message": f"{type(exc).__name__}: {exc}"},
                }
            _end_span(span, result)
            spans.close()
            self._executing, executing = self._executing - 1, False
            await self._submit(payload, result)
            self.completed += 1
        finally:
            spans.__exit__(*sys.exc_info())  # a no-op once closed
            if executing:
                self._executing -= 1
            self._running.pop(payload.task_id, None)
            self._slots_changed.set()
            if skill is not None and "task_files" in skill.inject and self._blobs is not None:
                await asyncio.to_thread(shutil.rmtree, self.task_files_dir / payload.task_id, True)

    @staticmethod
    def _result_of(value: Any) -> dict[str, Any]:
        if isinstance(value, BaseModel):
            return {"status": rxon.TASK_STATUS_SUCCESS, "data": value.model_dump(mode="json")}
        if (
            isinstance(value, dict)
            and "status" in value
            and set(value) <= {"status", "data", "error", "metadata"}
        ):
            return dict(value)
        if value is None:
            return {"status": rxon.TASK_STATUS_SUCCESS, "data": {}}
        if not isinstance(value, dict):
            value = {"result": value}
        return {"status": rxon.TASK_STATUS_SUCCESS, "data": value}

    def _result_body(self, payload: rxon.TaskPayload, result: dict[str, Any]) -> dict[str, Any]:
        """``rxon.TaskResult(...).wire()``, built directly."""
        body: dict[str, Any] = {
            "job_id": payload.job_id,
            "task_id": payload.task_id,
            "worker_id": self.worker_id,
            "status": str(result.get("status", rxon.TASK_STATUS_SUCCESS)),
        }
        if result.get("data") is not None:
            body["data"] = result["data"]
        if result.get("error"):
            body["error"] = rxon.TaskError.model_validate(result["error"]).wire()
        if result.get("metadata") is not None:
            body["metadata"] = result["metadata"]
        return body

    async def _submit(self, payload: rxon.TaskPayload, result: dict[str, Any]) -> None:
        """Queue the result for the sender and wait until the server has it (or it was given up)."""
        out = _Outgoing(
            payload, self._result_body(payload, result), asyncio.get_running_loop().create_future()
        )
        self._outbox.append(out)
        self._outbox_ready.set()
        await asyncio.shield(out.sent)

    async def _flush_loop(self) -> None:
        """Send what the finished tasks left in the outbox: all of it in one ``tasks/results`` call that
        also asks for the next tasks, or one ``tasks/result`` each on a plain RXON server."""
        await self._registered.wait()
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            batch, self._outbox = (
                self._outbox[: rxon.MAX_TASKS_PER_CALL],
                self._outbox[rxon.MAX_TASKS_PER_CALL :],
            )
            if self._outbox:
                self._outbox_ready.set()
            if not batch:
                continue
            self._flushing = True
            try:
                if self._batch_routes:
                    try:
                        await self._deliver_batch(batch)
                    except _Unsupported:
                        self._batch_routes = False
                if not self._batch_routes:
                    await asyncio.gather(*(self._deliver_one(out) for out in batch))
            finally:
                self._flushing = False
                for out in batch:
                    if not out.sent.done():
                        out.sent.set_result(None)
                self._slots_changed.set()

    async def _deliver_batch(self, batch: list[_Outgoing]) -> None:
        assert self._http is not None
        body: dict[str, Any] = {"worker_id": self.worker_id, "results": [out.body for out in batch]}

        async def attempt() -> Response:
            assert self._http is not None
            message = dict(body)
            free = self._free_slots()
            if free > 0:
                message["next"] = {"max_tasks": free, "available_skills": list(self._skills)}
            response = await self._http.post(rxon.ENDPOINT_TASK_RESULTS, json=self._signed(message))
            if response.status_code in (404, 405):
                raise _Unsupported
            return response

        response = await self._with_retries(attempt, f"{len(batch)} results", self._ids())
        if response is None:
            return
        reply = response.json() or {}
        for out, answer in zip(batch, reply.get("results") or [], strict=False):
            if isinstance(answer, dict) and answer.get("status") == "ignored":
                log.info(
                    "result of task %s ignored: %s",
                    out.payload.task_id,
                    answer.get("reason"),
                    extra=self._ids(task_id=out.payload.task_id, job_id=out.payload.job_id),
                )
        self._start_tasks(reply.get("tasks") or [])

    async def _deliver_one(self, out: _Outgoing) -> None:
        async def attempt() -> Response:
            assert self._http is not None
            return await self._http.post(rxon.ENDPOINT_TASK_RESULT, json=self._signed(dict(out.body)))

        ids = self._ids(task_id=out.payload.task_id, job_id=out.payload.job_id)
        response = await self._with_retries(attempt, f"the result of task {out.payload.task_id}", ids)
        if response is not None and (response.json() or {}).get("status") == "ignored":
            log.info(
                "result of task %s ignored: %s", out.payload.task_id, response.json().get("reason"), extra=ids
            )

    async def _with_retries(
        self, attempt: Callable[[], Awaitable[Response]], what: str, ids: dict[str, str]
    ) -> Response | None:
        """Send until the server answers (retrying with backoff while it is away, 5xx or 429); ``None``
        when it refused (4xx) or the time ran out: the task's lease then expires and it runs again."""
        backoff = _Backoff(self._backoff.initial_s, self._backoff.max_s)
        deadline = self.clock.monotonic() + max(60.0, self.drain_timeout_s)
        while True:
            try:
                response = await attempt()
                if response.status_code < 300:
                    return response
                if response.status_code < 500 and response.status_code != 429:
                    log.error(
                        "%s refused: HTTP %d %s", what, response.status_code, response.text[:300], extra=ids
                    )
                    return None
                reason = f"HTTP {response.status_code}"
            except (HttpError, ValueError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if self.clock.monotonic() > deadline:
                log.error(
                    "giving up on %s (%s); its lease will expire and the task run again",
                    what,
                    reason,
                    extra=ids,
                )
                return None
            delay = backoff.next()
            log.warning("%s not delivered (%s); retry in %.2f s", what, reason, delay, extra=ids)
            await self.clock.sleep(delay)

    async def _send_progress(self, ctx: TaskContext, progress: float, message: str) -> None:
        if self._http is None:
            return
        event = rxon.WorkerEvent(
            event_id=new_ulid_str(),
            worker_id=self.worker_id,
            origin_worker_id=self.worker_id,
            event_type=rxon.EVENT_TYPE_PROGRESS,
            payload={"progress": progress, "message": message},
            origin_task_id=ctx.task_id,
            target_job_id=ctx.job_id,
            target_task_id=ctx.task_id,
        )
        try:
            await self._http.post(rxon.ENDPOINT_EVENTS, json=self._signed(event.wire()))
        except HttpError as exc:
            log.warning(
                "progress of task %s not delivered: %s",
                ctx.task_id,
                exc,
                extra=self._ids(task_id=ctx.task_id),
            )
