"""podium.dashboard: the web dashboard at ``/dashboard`` of ``podium serve`` and ``podium workcell serve``.

The dashboard is a client of the public API like any other: one static page (HTML, CSS and a small script,
shipped in the package: nothing to build at install time) that reads the API with the same tokens and stays
live on the API's own event stream (server-sent events), re-reading what an event says changed. The page
holds no data, so it is public; every call it makes needs a token, which the login form keeps in the
browser's session storage (never in a URL). Why a static page and no framework: the whole client is one
~500-line script with no build step, fast to load on a phone, and the API stays the only interface.

- :func:`mount_workcell_dashboard` adds ``GET /dashboard`` (+ its assets), ``GET /events`` (workflow,
  node and "something changed" events) and ``POST /dashboard/definition`` (a workflow YAML from the submit
  form, parsed and stored) to a workcell app;
- :func:`mount_jobs_dashboard` adds ``GET /dashboard`` (+ its assets) and ``GET /api/v1/events`` (the
  engine's job events) to the jobs server's app.

Event stream: ``text/event-stream``; each event has a type (``event:``) and a JSON ``data:`` line; a comment
line every 15 s keeps idle connections open. A client that falls behind by more than 1,000 events gets one
``resync`` event instead of the ones it missed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from importlib import resources
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from podium.wire.jobs import ErrorBody

__all__ = [
    "DASHBOARD_PATHS",
    "MAX_DEFINITION_BYTES",
    "mount_jobs_dashboard",
    "mount_workcell_dashboard",
]

_ASSETS = {
    "/dashboard": ("index.html", "text/html; charset=utf-8"),
    "/dashboard/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/dashboard/app.css": ("app.css", "text/css; charset=utf-8"),
    "/dashboard/mermaid.min.js": ("mermaid.min.js", "text/javascript; charset=utf-8"),
}
DASHBOARD_PATHS = frozenset(_ASSETS)
"""The dashboard's public paths (the page and its assets; they hold no data)."""

MAX_DEFINITION_BYTES = 1_000_000
"""The largest workflow YAML the submit form may send (413 above it)."""

KEEPALIVE_S = 15.0
POLL_S = 0.5
QUEUE_LIMIT = 1000
_Event = tuple[str, dict[str, Any]]


class _Workcell(Protocol):
    """What the dashboard reads of a :class:`~podium.workcell.WorkcellEngine` (the dashboard sits below
    the workcell and the server in the layering, so it names no class of theirs)."""

    nodes: dict[str, Any]
    listeners: list[Callable[[str, Any], None]]
    journal: Any
    workcell: Any

    async def save_definition(self, definition: Any) -> str: ...


class _Engine(Protocol):
    """What the dashboard reads of an :class:`~podium.engine.OrchestratorEngine`."""

    def subscribe(self, listener: Callable[[Any], None]) -> Callable[[], None]: ...


def _asset(name: str) -> bytes:
    return (resources.files("podium.dashboard") / "static" / name).read_bytes()


def _add_assets(app: FastAPI, kind: str, title: str) -> None:
    cache: dict[str, bytes] = {}

    def serve(path: str, file: str, media: str) -> Callable[[], Any]:
        async def endpoint() -> Response:
            if path not in cache:
                body = _asset(file)
                if file == "index.html":
                    body = body.replace(b"{{kind}}", kind.encode()).replace(b"{{title}}", title.encode())
                cache[path] = body
            return Response(cache[path], media_type=media, headers={"cache-control": "no-cache"})

        return endpoint

    for path, (file, media) in _ASSETS.items():
        app.add_api_route(path, serve(path, file, media), methods=["GET"], include_in_schema=False)


class _Stream:
    """One subscriber's bounded queue of events, drained into ``text/event-stream`` chunks."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[_Event] = asyncio.Queue(QUEUE_LIMIT)
        self.overflowed = False

    def put(self, event: str, data: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait((event, data))
        except asyncio.QueueFull:
            self.overflowed = True

    async def chunks(self, extra: Callable[[], Iterable[_Event]] | None = None) -> AsyncIterator[bytes]:
        """The stream's chunks; ``extra`` (checked at least every ``POLL_S`` seconds, busy or idle) yields
        events found by looking rather than told (a node's status read)."""
        loop = asyncio.get_running_loop()
        yield b"retry: 2000\n\n"
        yield _chunk("hello", {})
        polled = sent = loop.time()
        while True:
            try:
                wait = POLL_S if extra is not None else KEEPALIVE_S
                event, data = await asyncio.wait_for(self.queue.get(), wait)
            except TimeoutError:
                if loop.time() - sent >= KEEPALIVE_S:
                    sent = loop.time()
                    yield b": keepalive\n\n"
            else:
                sent = loop.time()
                if self.overflowed:
                    self.overflowed = False
                    while not self.queue.empty():
                        self.queue.get_nowait()
                    yield _chunk("resync", {})
                else:
                    yield _chunk(event, data)
            if extra is not None and loop.time() - polled >= POLL_S:
                polled = loop.time()
                for item in extra():
                    yield _chunk(*item)


def _chunk(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _event_response(chunks: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        chunks,
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body over {limit} bytes")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise HTTPException(413, f"body over {limit} bytes")
    return bytes(body)


# --- workcell ---------------------------------------------------------------------------------------


class _Problem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class _Refusal(BaseModel):
    """A refused submission, in FastAPI's validation-error shape: what is wrong, and where."""

    detail: list[_Problem]


def _refused(kind: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body",), "msg": message, "type": kind}])


def _node_fingerprint(engine: _Workcell) -> str:
    return json.dumps({k: v.status for k, v in engine.nodes.items()}, sort_keys=True, default=str)


def mount_workcell_dashboard(app: FastAPI, engine: _Workcell, *, definition_model: type[BaseModel]) -> None:
    """Add the dashboard, its event stream and its YAML submission route to a workcell app
    (``definition_model``: the workflow definition model the YAML is checked against)."""
    _add_assets(app, "workcell", f"podium workcell: {engine.workcell.name}")

    async def events(request: Request) -> StreamingResponse:
        """Server-sent events: ``workflow`` (id, event, state, step) when a run changes, ``nodes`` when a
        node's status changes, ``changed`` when anything else may have (resources, the queue)."""
        stream = _Stream()

        def on_workflow(event: str, wf: Any) -> None:
            stream.put(
                "workflow",
                {
                    "workflow_id": wf.workflow_id,
                    "event": event,
                    "state": wf.state.value,
                    "step": wf.status.current_step_index,
                },
            )

        nodes_seen = _node_fingerprint(engine)
        changed: asyncio.Event = engine.journal.changed

        def poll() -> Iterable[_Event]:
            nonlocal nodes_seen, changed
            nodes = _node_fingerprint(engine)
            if nodes != nodes_seen:
                nodes_seen = nodes
                yield "nodes", {}
            if changed.is_set():  # the journal swaps in a fresh event each time it sets one
                changed = engine.journal.changed
                yield "changed", {}

        async def chunks() -> AsyncIterator[bytes]:
            engine.listeners.append(on_workflow)
            try:
                async for chunk in stream.chunks(poll):
                    yield chunk
            finally:
                if on_workflow in engine.listeners:
                    engine.listeners.remove(on_workflow)

        return _event_response(chunks())

    async def submit_yaml(request: Request) -> str:
        """Store a workflow definition sent as YAML (the dashboard's submit form); answer its id."""
        import yaml

        text = await _read_capped(request, MAX_DEFINITION_BYTES)
        try:
            doc = yaml.safe_load(text.decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise _refused("yaml_syntax", f"workflow YAML: {exc}") from None
        if not isinstance(doc, dict):
            raise _refused("yaml_shape", "workflow YAML: expected a mapping with name and steps")
        try:
            definition = definition_model.model_validate(doc)
        except ValidationError as exc:
            raise RequestValidationError(
                [
                    {"loc": ("body", *e["loc"]), "msg": e["msg"], "type": e["type"]}
                    for e in exc.errors(include_url=False, include_context=False, include_input=False)
                ]
            ) from None
        return await engine.save_definition(definition)

    app.add_api_route(
        "/events",
        events,
        methods=["GET"],
        summary="Live events (server-sent events): workflow, nodes, changed",
        response_class=StreamingResponse,
    )
    app.add_api_route(
        "/dashboard/definition",
        submit_yaml,
        methods=["POST"],
        summary="Store a workflow definition sent as YAML text; answers its id",
        responses={422: {"model": _Refusal, "description": "The YAML does not read or is not a workflow"}},
        openapi_extra={
            "requestBody": {"content": {"application/yaml": {"schema": {"type": "string"}}}, "required": True}
        },
    )


# --- jobs -------------------------------------------------------------------------------------------


def mount_jobs_dashboard(
    app: FastAPI,
    engine: _Engine,
    *,
    auth: Callable[..., Any],
    api_prefix: str = "api",
    traces: Callable[[str], Awaitable[list[dict[str, Any]]]] | None = None,
) -> None:
    """Add the dashboard and the job event stream (``GET /<api_prefix>/v1/events``, behind the ``auth``
    dependency, the client routes' own) to the jobs server's app; with ``traces`` (a flow trace's events by
    trace id, from the StateStore flows write to), also ``GET /<api_prefix>/v1/flows/traces/{trace_id}``."""
    _add_assets(app, "jobs", "podium jobs")

    async def events() -> StreamingResponse:
        """Server-sent events: one ``job`` event per engine event (type, job, status, state, task)."""
        stream = _Stream()

        def on_event(event: Any) -> None:
            stream.put(
                "job",
                {
                    "type": event.type,
                    "job_id": event.job_id,
                    "status": event.status,
                    "state": event.state,
                    "task_id": event.task_id,
                },
            )

        async def chunks() -> AsyncIterator[bytes]:
            unsubscribe = engine.subscribe(on_event)
            try:
                async for chunk in stream.chunks():
                    yield chunk
            finally:
                unsubscribe()

        return _event_response(chunks())

    prefix = f"/{api_prefix.strip('/')}" if api_prefix.strip("/") else ""
    app.add_api_route(
        f"{prefix}/v1/events",
        events,
        methods=["GET"],
        summary="Live job events (server-sent events)",
        tags=["jobs"],
        dependencies=[Depends(auth)],
        response_class=StreamingResponse,
    )
    if traces is not None:
        read_trace = traces

        async def trace(trace_id: Annotated[str, Path(min_length=1, max_length=200)]) -> Any:
            """A flow trace's events, oldest first (404 when the StateStore has none)."""
            events = await read_trace(trace_id)
            if not events:  # the error body every route of the API answers with
                body = ErrorBody(error=f"no events of flow trace {trace_id!r}").model_dump(exclude_none=True)
                return JSONResponse(body, status_code=404)
            return events

        app.add_api_route(
            f"{prefix}/v1/flows/traces/{{trace_id}}",
            trace,
            methods=["GET"],
            summary="A flow trace's events (from the flows' StateStore)",
            tags=["flows"],
            dependencies=[Depends(auth)],
            response_model=list[dict[str, Any]],
            responses={
                401: {"model": ErrorBody, "description": "No valid token"},
                404: {"model": ErrorBody, "description": "No events of this trace"},
                422: {"model": ErrorBody, "description": "The trace id is empty or too long"},
            },
        )
