"""Serve a flow as an A2A agent over HTTP (``penguiflow_a2a``'s surface).

``A2AServerAdapter`` runs the flow and maps A2A tasks onto traces: each ``message/send`` or
``message/stream`` emits one message (a new trace, or the caller's ``traceId``) and answers with what that
trace delivers at Rookery; ``tasks/cancel`` cancels the trace. Results are routed to their request by trace
id, including results a node returns as a bare payload (the runtime tags those with the trace that made
them). Each task's binding (trace id, task id, context id, agent URL) goes to the flow's StateStore.

A node that fails for good ends its task as ``failed`` with the :class:`FlowError` payload (whether or not
the flow emits errors to Rookery); a cancelled trace ends it as ``cancelled``.

``create_a2a_app(adapter)`` builds the FastAPI app: ``GET /agent`` (the agent card), ``POST /message/send``,
``POST /message/stream`` (SSE: ``status``, ``chunk`` per stream chunk, ``artifact``, ``done``; ``error``
before ``done`` on failure or cancellation; a caller that disconnects mid-stream cancels the trace),
``POST /tasks/cancel``. Request errors go through one
exception handler (:class:`A2ARequestError` -> its status); bodies that do not validate get FastAPI's 422.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._edges import trace_of
from ..errors import FlowError, TraceCancelled
from ..state import RemoteBinding
from ..streaming import format_sse_event
from ..types import Headers, Message, StreamChunk

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "A2AAgentCard",
    "A2AMessagePayload",
    "A2ARequestError",
    "A2AServerAdapter",
    "A2ASkill",
    "A2ATaskCancelRequest",
    "create_a2a_app",
]

_SHUTDOWN = object()


class A2ASkill(BaseModel):
    """One capability an agent offers."""

    name: str
    description: str
    mode: str = Field(default="both", description="message/send, message/stream, or both.")
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)

    model_config = ConfigDict(extra="allow")


class A2AAgentCard(BaseModel):
    """The agent card served at ``GET /agent``."""

    name: str
    description: str
    version: str = "1.0.0"
    schema_version: str = Field(default="1.0")
    tags: list[str] = Field(default_factory=list)
    capabilities: list[str] = Field(default_factory=list)
    skills: list[A2ASkill] = Field(default_factory=list)
    contact_url: str | None = None
    documentation_url: str | None = None

    model_config = ConfigDict(extra="allow")

    def to_payload(self) -> dict[str, Any]:
        return self.model_dump()


class A2AMessagePayload(BaseModel):
    """The body of ``message/send`` and ``message/stream``."""

    payload: Any
    headers: Mapping[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)
    trace_id: str | None = Field(default=None, alias="traceId")
    context_id: str | None = Field(default=None, alias="contextId")
    task_id: str | None = Field(default=None, alias="taskId")
    deadline_s: float | None = Field(default=None, alias="deadlineSeconds")

    model_config = ConfigDict(populate_by_name=True)


class A2ATaskCancelRequest(BaseModel):
    """The body of ``tasks/cancel``."""

    task_id: str = Field(alias="taskId")

    model_config = ConfigDict(populate_by_name=True)


class A2ARequestError(Exception):
    """A request the adapter refuses, with the HTTP status to answer."""

    def __init__(self, *, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


def _jsonable(value: Any) -> Any:
    if isinstance(value, Message):
        return {
            "payload": _jsonable(value.payload),
            "headers": value.headers.model_dump(),
            "trace_id": value.trace_id,
            "meta": dict(value.meta),
        }
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, Mapping):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(item) for item in value]
    return value


def _sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


class A2AServerAdapter:
    """Serve ``flow`` to A2A callers (see the module docstring).

    Args:
        flow: the flow to run; started by :meth:`start` (the app's lifespan), stopped by :meth:`stop`.
        agent_card: the card served at ``GET /agent`` (a mapping is validated into one).
        agent_url: this agent's URL, recorded in each task's binding.
        target: the ingress node(s) requests go to (default: every ingress node).
        registry: the ModelRegistry the flow runs with.
        default_headers: headers merged under each request's own (``tenant`` is required).
    """

    def __init__(
        self,
        flow: Any,
        *,
        agent_card: A2AAgentCard | Mapping[str, Any],
        agent_url: str,
        target: Sequence[Any] | Any | None = None,
        registry: Any | None = None,
        default_headers: Mapping[str, Any] | None = None,
    ) -> None:
        self._flow = flow
        self._registry = registry
        self._target = target
        self._default_headers = dict(default_headers or {})
        self.agent_card = (
            agent_card if isinstance(agent_card, A2AAgentCard) else A2AAgentCard.model_validate(agent_card)
        )
        self.agent_url = agent_url
        self._started = False
        self._tasks: dict[str, tuple[str, str]] = {}  # task id -> (trace id, context id)
        self._queues: dict[str, asyncio.Queue[Any]] = {}  # trace id -> what reaches its request
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self._abandoned: set[asyncio.Task[bool]] = set()  # cancels of traces whose stream was dropped
        traces = getattr(flow, "_traces", None)
        self._untraced: dict[int, Any] = traces.track_untraced_results() if traces is not None else {}
        if traces is not None:
            traces.failure_listeners.append(self._on_failure)

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Run the flow (idempotent)."""
        if self._started:
            return
        self._flow.run(registry=self._registry)
        self._started = True
        self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    async def stop(self) -> None:
        """Stop the flow; requests still waiting end with 503 (idempotent)."""
        if not self._started:
            return
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None:
            dispatcher.cancel()
        await self._flow.stop()
        if dispatcher is not None:
            with suppress(asyncio.CancelledError):
                await dispatcher
        self._started = False
        watchers = list(self._watchers.values())
        queues = list(self._queues.values())
        self._watchers.clear()
        self._queues.clear()
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        for queue in queues:
            queue.put_nowait(_SHUTDOWN)

    # -- the three operations -------------------------------------------------------------------------------

    async def handle_send(self, request: A2AMessagePayload) -> dict[str, Any]:
        """``message/send``: run one message and answer with its trace's result."""
        message, task_id, context_id = await self._open(request)
        ids = {"taskId": task_id, "contextId": context_id, "traceId": message.trace_id}
        try:
            await self._flow.emit(message, to=self._target)
            while True:
                item = await self._next(message.trace_id)
                if not isinstance(item, StreamChunk):
                    break
            response: dict[str, Any] = {"status": "succeeded", **ids, "output": _jsonable(item)}
            return response
        except TraceCancelled:
            return {"status": "cancelled", **ids}
        except _FailedError as failed:
            return {"status": "failed", **ids, "error": failed.payload}
        finally:
            self._close(task_id, message.trace_id)

    async def stream(self, request: A2AMessagePayload) -> tuple[AsyncIterator[bytes], str, str]:
        """``message/stream``: run one message; returns the SSE byte stream, the task id and the context id."""
        message, task_id, context_id = await self._open(request)
        return self._events(message, task_id, context_id), task_id, context_id

    async def cancel(self, request: A2ATaskCancelRequest) -> dict[str, Any]:
        """``tasks/cancel``: cancel the task's trace (``cancelled`` false for an unknown or finished task)."""
        self._ensure_started()
        entry = self._tasks.get(request.task_id)
        if entry is None:
            return {"taskId": request.task_id, "cancelled": False}
        trace_id, context_id = entry
        cancelled = await self._flow.cancel(trace_id)
        return {
            "taskId": request.task_id,
            "cancelled": cancelled,
            "traceId": trace_id,
            "contextId": context_id,
        }

    # -- tasks and traces -----------------------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if not self._started:
            raise A2ARequestError(status_code=503, detail="flow is not running")

    async def _open(self, request: A2AMessagePayload) -> tuple[Message, str, str]:
        self._ensure_started()
        try:
            headers = Headers(**{**self._default_headers, **dict(request.headers)})
        except ValidationError as exc:
            raise A2ARequestError(status_code=422, detail=str(exc)) from exc
        options: dict[str, Any] = {}
        if request.trace_id is not None:
            options["trace_id"] = request.trace_id
        if request.deadline_s is not None:
            options["deadline_s"] = request.deadline_s
        message = Message(payload=request.payload, headers=headers, **options)
        message.meta.update(request.meta)
        trace_id = message.trace_id
        context_id = request.context_id or trace_id
        task_id = request.task_id or trace_id or uuid.uuid4().hex
        if task_id in self._tasks:
            raise A2ARequestError(status_code=409, detail=f"task {task_id!r} already active")
        if trace_id in self._queues:
            raise A2ARequestError(status_code=409, detail=f"trace {trace_id!r} already active")
        self._tasks[task_id] = (trace_id, context_id)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._queues[trace_id] = queue
        self._watchers[trace_id] = asyncio.create_task(self._watch_cancel(trace_id, queue))
        binding = RemoteBinding(
            trace_id=trace_id, context_id=context_id, task_id=task_id, agent_url=self.agent_url
        )
        await self._flow.save_remote_binding(binding)
        return message, task_id, context_id

    def _close(self, task_id: str, trace_id: str) -> None:
        self._tasks.pop(task_id, None)
        self._queues.pop(trace_id, None)
        watcher = self._watchers.pop(trace_id, None)
        if watcher is not None:
            watcher.cancel()

    async def _next(self, trace_id: str) -> Any:
        """The next payload for ``trace_id``'s request; raises for a cancelled, failed or stopped trace."""
        queue = self._queues.get(trace_id)
        if queue is None:
            raise A2ARequestError(status_code=503, detail="flow is shutting down")
        item = await queue.get()
        if item is _SHUTDOWN:
            raise A2ARequestError(status_code=503, detail="flow is shutting down")
        if isinstance(item, TraceCancelled):
            raise item
        if isinstance(item, FlowError):
            payload = item.to_payload()
            payload.setdefault("trace_id", trace_id)
            raise _FailedError(payload)
        return item.payload if isinstance(item, Message) else item

    async def _watch_cancel(self, trace_id: str, queue: asyncio.Queue[Any]) -> None:
        await self._flow.ensure_trace_event(trace_id).wait()
        queue.put_nowait(TraceCancelled(trace_id))

    def _on_failure(self, error: FlowError) -> None:
        queue = self._queues.get(error.trace_id) if error.trace_id is not None else None
        if queue is not None:
            queue.put_nowait(error)

    async def _dispatch(self) -> None:
        """Route everything that reaches Rookery to the request of its trace."""
        while True:
            item = await self._flow.fetch()
            trace_id = trace_of(item)
            if trace_id is None:
                trace_id = self._untraced.pop(id(item), None)
            queue = self._queues.get(trace_id) if trace_id is not None else None
            # A request's queue exists before its message is emitted, so an item without one belongs to a
            # request that has already been answered (a second result, an error already reported): dropped.
            if queue is not None:
                queue.put_nowait(item)

    async def _events(self, message: Message, task_id: str, context_id: str) -> AsyncIterator[bytes]:
        ids = {"taskId": task_id, "contextId": context_id}
        finished = False
        try:
            await self._flow.emit(message, to=self._target)
            yield _sse("status", {"status": "accepted", **ids})
            while True:
                item = await self._next(message.trace_id)
                if isinstance(item, StreamChunk):
                    meta = {**item.meta}
                    meta.setdefault("taskId", task_id)
                    meta.setdefault("contextId", context_id)
                    yield format_sse_event(item.model_copy(update={"meta": meta})).encode()
                    continue
                finished = True
                yield _sse("artifact", {**ids, "output": _jsonable(item)})
                break
        except TraceCancelled:
            finished = True
            yield _sse("error", {**ids, "code": "TRACE_CANCELLED", "message": "Trace cancelled"})
        except _FailedError as failed:
            finished = True
            yield _sse("error", {**failed.payload, **ids})
        except A2ARequestError as exc:
            finished = True
            yield _sse("error", {**ids, "code": "UNAVAILABLE", "message": exc.detail})
        finally:
            self._close(task_id, message.trace_id)
            if not finished and self._started:
                # the caller went away mid-stream: nobody will read the result, so the trace stops too
                self._abandon(message.trace_id)
        yield _sse("done", ids)

    def _abandon(self, trace_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._flow.cancel(trace_id))
        self._abandoned.add(task)
        task.add_done_callback(self._abandoned.discard)


class _FailedError(Exception):
    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(payload.get("message"))
        self.payload = payload


def create_a2a_app(adapter: A2AServerAdapter, *, include_docs: bool = True) -> FastAPI:
    """The FastAPI app serving ``adapter``; its lifespan starts and stops the flow (see ``a2a.app``)."""
    from .app import build_app

    return build_app(adapter, include_docs=include_docs)
