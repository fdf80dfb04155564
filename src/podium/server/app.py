"""The ASGI app: client API (``/api``), RXON worker API (``/_worker``), public routes (``/_public``).

Owns the app's assembly: :func:`create_app` (the state, the lifespan, the routers of
:mod:`~podium.server.routes_client`, :mod:`~podium.server.routes_worker` and
:mod:`~podium.server.routes_public`, the error table of :mod:`~podium.server.errors`) and the pure-ASGI
front that serves the hot routes itself. It must not hold route logic of its own: the fast routes call the
same core functions as their FastAPI twins.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI
from pydantic import ValidationError

from podium.dashboard import mount_jobs_dashboard
from podium.engine.engine import OrchestratorEngine
from podium.ops import Tracing
from podium.ops.ratelimit import RateLimited
from podium.server._state import ServerState
from podium.server.auth import authenticate_client, authenticate_worker, request_client
from podium.server.errors import ApiError, answer, body_error, install_error_handlers
from podium.server.ratelimit import check_request
from podium.server.routes_client import (
    add_blueprint_routes,
    client_router,
    find_job,
    job_out,
    job_path,
    may_see,
    submit_job,
)
from podium.server.routes_ops import ops_router
from podium.server.routes_public import public_router
from podium.server.routes_worker import next_tasks, take_result, take_results, worker_router
from podium.server.settings import ServerSettings
from podium.wire import codec, rxon
from podium.wire.jobs import CreateJobRequest

__all__ = ["ApiError", "create_app", "job_path"]

log = logging.getLogger("podium.server")

_Receive = Callable[[], Awaitable[Mapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_JSON_HEADERS = [(b"content-type", b"application/json")]
_VERSION_HEADER = (rxon.PROTOCOL_VERSION_HEADER.lower().encode(), rxon.PROTOCOL_VERSION.encode())
_NEXT_SUFFIX = "/tasks/next"
_BODIES_KEPT = 4096  # jobs whose last status body answer_now keeps (all dropped when full)


class _Front:
    """The outermost layer, pure ASGI: request metrics, the RXON version header on worker routes, and the
    hot routes (job submission to a blueprint's endpoint, a job's status, ``tasks/next``, ``tasks/result``,
    ``tasks/results``) served directly. Those routes keep their FastAPI twins (OpenAPI, the same core
    functions); everything else goes to FastAPI. A job's status known at once is answered before ASGI
    (:meth:`answer_now`, asked by the HTTP protocol as it parses the request)."""

    def __init__(self, app: Any, st: ServerState) -> None:
        self.app, self.st = app, st
        self.job_routes = st.job_routes
        self.observe = st.metrics.http.observe  # (method, route template, status, seconds)
        self._next_prefix = f"{rxon.WORKER_API_PREFIX}/workers/"
        prefix = st.settings.api_prefix.strip("/")
        # a job's status: GET {prefix}/v1/jobs/{job_id}, served here when the client API is on
        self._job_prefix = f"/{prefix}/v1/jobs/" if prefix else "/v1/jobs/"
        self._job_template = f"{self._job_prefix}{{job_id}}"
        self._serve_jobs = st.settings.enable_client_api
        self._bodies: dict[str, tuple[Any, bytes]] = {}  # job id -> the view last answered, its body

    async def __call__(self, scope: dict[str, Any], receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path, method = scope["path"], scope["method"]
        if self.st.rate_limiter is not None:
            try:
                await check_request(self.st, self.st.rate_limiter, scope)
            except RateLimited as exc:
                status = await self._reply(scope, send, exc)
                self.observe(method, "rate-limited", status, time.perf_counter() - started)
                return
            except Exception:  # the store failing: let the request through, as Avtomatika does
                log.exception("rate limiter failed; request let through")
        if method not in _BODYLESS:
            # No route reads a body above the limit: refused by its Content-Length before any of it is
            # read; a chunked one is read up to the limit at most, then handed on whole.
            try:
                receive = await _bounded(scope, receive, self.st.settings.max_body_bytes)
            except ApiError as exc:
                await _send_error(send, exc, path.startswith(rxon.WORKER_API_PREFIX))
                self.observe(method, "body limit", exc.status, time.perf_counter() - started)
                return
        template: str | None = None
        if method == "POST":
            if (
                path == rxon.ENDPOINT_TASK_RESULT
                or path == rxon.ENDPOINT_TASK_RESULTS
                or path in self.job_routes
            ):
                template = path
        elif method == "GET":
            if path.endswith(_NEXT_SUFFIX) and path.startswith(self._next_prefix):
                worker_id = path[len(self._next_prefix) : -len(_NEXT_SUFFIX)]
                if worker_id and "/" not in worker_id:
                    template = rxon.ENDPOINT_TASK_NEXT
            elif self._serve_jobs and path.startswith(self._job_prefix):
                job_id = path[len(self._job_prefix) :]
                if job_id and "/" not in job_id:
                    template = self._job_template
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

    def answer_now(self, path: str, headers: list[tuple[bytes, bytes]]) -> bytes | None:
        """The JSON body of a 200 answer to ``GET path`` (a job's status), when it is known at once: the
        client is authenticated and not counted against quotas, the store knows the job without a read
        (:meth:`~podium.engine.jobs.Jobs.peek_job`) and the client may see it; the request is counted in the
        metrics as :meth:`_serve` counts it. ``None``, having changed nothing: the request takes the usual
        way (which answers everything else: 401, 404, 429, ...). The HTTP protocol calls this as it parses
        a request (:mod:`podium.server._protocol`), without starting a task for it."""
        started = time.perf_counter()
        st = self.st
        prefix = self._job_prefix
        if not self._serve_jobs or st.rate_limiter is not None or not path.startswith(prefix):
            return None
        job_id = path[len(prefix) :]
        if not job_id or "/" in job_id:
            return None
        token = None
        for key, value in headers:
            if key == b"x-client-token":
                if token is None:  # the first one, as _header reads it
                    token = value.decode("latin-1")
            elif key == b"content-length" or key == b"transfer-encoding":
                return None  # a body: the usual way reads it (and its limit)
        client = st.clients.authenticate(token)
        if client is None or st.quotas.counts(client):
            return None
        view = st.engine.jobs.peek_job(job_id)
        if view is None or not may_see(client, view):
            return None
        # the same view again (peek_job gives the same object while the job is unchanged): the same body
        answered = self._bodies.get(job_id)
        if answered is not None and answered[0] is view:
            body = answered[1]
        else:
            body = codec.dumps(job_out(st, view))
            if len(self._bodies) >= _BODIES_KEPT:
                self._bodies.clear()
            self._bodies[job_id] = (view, body)
        self.observe("GET", self._job_template, 200, time.perf_counter() - started)
        return body

    async def _reply(self, scope: dict[str, Any], send: _Send, exc: Exception) -> int:
        """Answer ``exc`` by the app's error table before any route ran (a request over its rate limit)."""
        error = answer(self.st, exc)
        if error is None:
            log.exception("%s %s failed", scope["method"], scope["path"])
            error = ApiError(500, "internal server error")
        body = codec.dumps(error.body.model_dump(exclude_none=True))
        headers = [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
        headers += [(b"content-length", str(len(body)).encode()), *_JSON_HEADERS]
        if scope["path"].startswith(rxon.WORKER_API_PREFIX):
            headers.append(_VERSION_HEADER)
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return error.status

    async def _serve(self, scope: dict[str, Any], receive: _Receive, send: _Send, template: str) -> int:
        worker_route = template.startswith(rxon.WORKER_API_PREFIX)
        headers: list[tuple[bytes, bytes]] = []
        try:
            status, payload = await self._route(scope, receive, template)
        except Exception as exc:
            error = answer(self.st, exc)  # the app's error table, as FastAPI's routes are answered
            if error is None:
                log.exception("%s %s failed", scope["method"], scope["path"])
                status, payload = 500, {"error": "internal server error"}
            else:
                status, payload = error.status, error.body.model_dump(exclude_none=True)
                headers = [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
        body = b"" if payload is None else codec.dumps(payload)
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
            authenticate_worker(st, *_worker_headers(raw_headers), worker_id)
            query = _parse_query(scope["query_string"])
            poll_s = _query_number(query, "timeout", float, 0.0, None)
            max_tasks = _query_number(query, "max_tasks", int, 1, rxon.MAX_TASKS_PER_CALL)
            skills = query.get("available_skills", [None])[-1]
            return await next_tasks(st, worker_id, skills, max_tasks, poll_s or 0.0, receive)
        if template == self._job_template:
            # GET /api/v1/jobs/{job_id}: the client is authenticated and its request counted, as
            # routes_client.get_job does through its dependency
            client = authenticate_client(st, _header(raw_headers, b"x-client-token"))
            await st.quotas.count(client)
            job_id = scope["path"][len(self._job_prefix) :]
            return 200, job_out(st, await find_job(st, job_id, client))
        if template in (rxon.ENDPOINT_TASK_RESULT, rxon.ENDPOINT_TASK_RESULTS):
            body = _json_object(await _read_body(receive))
            claimed = body.get("worker_id") if isinstance(body.get("worker_id"), str) else None
            worker_id, token = authenticate_worker(st, *_worker_headers(raw_headers), claimed)
            if template == rxon.ENDPOINT_TASK_RESULT:
                return 200, await take_result(st, worker_id, token, body)
            return 200, await take_results(st, worker_id, token, body)
        # a blueprint's own submission route: authenticate before reading the body; the request and the
        # submission are counted against the client's quotas together
        client = authenticate_client(st, _header(raw_headers, b"x-client-token"))
        raw = await _read_body(receive)
        try:
            request = CreateJobRequest.model_validate_json(raw)
        except ValidationError as exc:
            await st.quotas.count(client)
            raise body_error(exc) from None
        job_id = await submit_job(st, client, self.job_routes[template], request, counted=False)
        return 202, {"job_id": job_id, "status": "accepted"}


def _parse_query(raw: bytes) -> dict[str, list[str]]:
    """``urllib.parse.parse_qs`` of a raw query string (fields without a value left out, as it leaves them),
    split here when nothing in it is escaped (no ``%``, no ``+``): a worker's poll asks
    ``timeout=30.0&available_skills=noop&hot_skills=``, and ``parse_qs`` costs ~1% of a job's server CPU."""
    text = raw.decode("latin-1")
    if "%" in text or "+" in text:
        return parse_qs(text)
    out: dict[str, list[str]] = {}
    for field in text.split("&"):
        name, _, value = field.partition("=")
        if value:
            values = out.get(name)
            if values is None:
                out[name] = [value]
            else:
                values.append(value)
    return out


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


_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS"})


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is larger than the limit of {limit} bytes (MAX_BODY_BYTES)")


async def _bounded(scope: dict[str, Any], receive: _Receive, limit: int) -> _Receive:
    """``receive`` for a request whose body is within ``limit``; :class:`ApiError` 413 if it is not.

    A declared ``Content-Length`` is checked without reading anything (the HTTP server stops a body at its
    declared length). A body without one (chunked) is read here, up to the limit, and replayed."""
    length = _header(scope["headers"], b"content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise ApiError(400, f"Content-Length is not a number: {length!r}") from None
        if declared > limit:
            raise _too_large(limit)
        return receive
    if _header(scope["headers"], b"transfer-encoding") is None:
        return receive  # no body at all
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    replayed = False

    async def replay() -> Mapping[str, Any]:
        nonlocal replayed
        if replayed:
            return await receive()  # after the body: only a disconnect can come
        replayed = True
        return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

    return replay


async def _send_error(send: _Send, exc: ApiError, worker_route: bool) -> None:
    body = codec.dumps(exc.body.model_dump(exclude_none=True))
    headers = [(b"content-length", str(len(body)).encode()), *_JSON_HEADERS]
    if worker_route:
        headers.append(_VERSION_HEADER)
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: _Receive) -> bytes:
    """The whole body (the front already checked it against the limit)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "the client went away")
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = codec.loads(raw)
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

    def answer_now(self, path: str, headers: list[tuple[bytes, bytes]]) -> bytes | None:
        """:meth:`_Front.answer_now` (the HTTP protocol looks for it on the app it serves)."""
        front = self.front
        return front.answer_now(path, headers) if front is not None else None


def create_app(
    engine: OrchestratorEngine,
    settings: ServerSettings | None = None,
    *,
    manage_engine: bool = True,
    tracing: Tracing | None = None,
) -> FastAPI:
    """Build the ASGI app around ``engine``.

    With ``manage_engine`` (the default) the app's lifespan starts and stops the engine. Raises
    :class:`~podium.errors.ConfigError` for a bad ``clients.toml``/``workers.toml``/``schedules.toml``, before
    serving anything. ``tracing`` (:class:`podium.ops.Tracing`, extra ``otel``): spans of jobs, states and
    tasks, and a W3C ``traceparent`` in each task handed to a remote worker; without one, ``settings.tracing``
    (``otlp``/``console``) builds one (:meth:`podium.ops.Tracing.from_exporter`), or raises
    :class:`~podium.errors.MissingDependencyError` naming ``pip install 'podium[otel]'``.
    """
    settings = settings or ServerSettings.load()
    if tracing is None and settings.tracing != "off":
        tracing = Tracing.from_exporter(settings.tracing)
    st = ServerState(engine, settings, manage_engine=manage_engine, tracing=tracing)

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
    install_error_handlers(app)
    app.include_router(public_router())
    app.include_router(worker_router())
    if settings.enable_client_api:
        st.job_routes = {
            job_path(d, settings.api_prefix): d.name for d in engine.blueprints.values() if d.api_endpoint
        }
        app.include_router(client_router(settings))
        app.include_router(ops_router(settings))
        add_blueprint_routes(app, st)
        mount_jobs_dashboard(
            app,
            engine,
            auth=request_client,
            api_prefix=settings.api_prefix,
            traces=_trace_reader(engine),
        )
    app.front = _Front(app._fastapi, st)
    return app


def _trace_reader(engine: OrchestratorEngine) -> Callable[[str], Awaitable[list[dict[str, Any]]]]:
    """Flow traces kept on the engine's store (flows given ``StoreStateStore(store)`` write them there)."""
    from podium.store.flow_state import StoreStateStore

    state = StoreStateStore(engine.storage)

    async def read(trace_id: str) -> list[dict[str, Any]]:
        return [
            {
                "ts": e.ts,
                "kind": e.kind,
                "node_name": e.node_name,
                "node_id": e.node_id,
                "payload": dict(e.payload),
            }
            for e in await state.load_history(trace_id)
        ]

    return read
