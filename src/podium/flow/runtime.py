"""The per-trace runtime of a flow: bookkeeping, cancellation, sending onto floes, and FlowEvents.

Per-trace bookkeeping lives in plain dicts; events are built only when someone listens (middlewares, a
state store, or a logger enabled for the event's level). ``cancel(trace_id)`` drops the trace's queued
messages and cancels the workers that are running it, which absorb that cancellation and carry on with the
next message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from . import _clock
from ._edges import OPEN_SEA, ROOKERY, Endpoint, Floe, trace_of
from .bus import BusEnvelope, MessageBus
from .errors import FlowError
from .metrics import FlowEvent
from .middlewares import Middleware
from .node import Node
from .state import RemoteBinding, StateStore, StoredEvent
from .types import WM, Message

if TYPE_CHECKING:
    from .context import Context

__all__ = ["ExcInfo", "TraceListener", "TraceRuntime", "Worker"]

logger = logging.getLogger("podium.flow.core")
_log_enabled = logger.isEnabledFor

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


class TraceListener(Protocol):
    """Internal hook for patterns that keep per-trace state (``join_k``)."""

    def trace_idle(self, trace_id: str) -> None: ...

    def trace_cancelled(self, trace_id: str) -> None: ...

    def flow_stopped(self) -> None: ...


class Worker:
    """The worker task of one node and the trace it is running right now."""

    __slots__ = ("cancel_pending", "context", "invoking", "node", "task", "trace_id", "unwound")

    def __init__(self, node: Node, context: Context) -> None:
        self.node = node
        self.context = context
        self.task: asyncio.Task[None] | None = None
        self.trace_id: Any = None
        self.cancel_pending = False
        self.unwound: asyncio.Future[None] | None = None
        self.invoking = False


class TraceRuntime:
    """What every node worker and context of one flow shares: per-trace state, sending, events.

    Args:
        queue_maxsize: the capacity of every edge (``<= 0``: unbounded); also bounds a stream's pending chunks.
        middlewares: async callables receiving every :class:`FlowEvent` (the list is shared, not copied).
        state_store: persists events and remote bindings.
        message_bus: receives every message put on an edge.
    """

    def __init__(
        self,
        *,
        queue_maxsize: int,
        middlewares: list[Middleware],
        state_store: StateStore | None,
        message_bus: MessageBus | None,
    ) -> None:
        self.queue_maxsize = queue_maxsize
        self.middlewares = middlewares
        self.state_store = state_store
        self.message_bus = message_bus
        self.workers: list[Worker] = []
        self.contexts: dict[Node | Endpoint, Context] = {}
        self.trace_counts: dict[Any, int] = {}
        self.cancelled: set[Any] = set()
        self.trace_events: dict[str, asyncio.Event] = {}
        self.cancel_hooks: dict[Any, list[Callable[[], None]]] = {}
        self.external_tasks: dict[str, set[asyncio.Future[Any]]] = {}
        self.trace_capacity_waiters: dict[str, list[asyncio.Event]] = {}
        self.trace_listeners: list[TraceListener] = []
        self.latest_wm_hops: dict[str, int] = {}
        self.bus_tasks: set[asyncio.Task[None]] = set()
        self.stream_seq: dict[str, int] = {}  # stream id -> the last sequence number sent
        self.untraced: dict[int, Any] | None = None  # see track_untraced_results
        # told of every FlowError as a node fails for good (no FlowEvent needed: the A2A adapter ends the task)
        self.failure_listeners: list[Callable[[FlowError], None]] = []

    def attach(self, contexts: dict[Node | Endpoint, Context]) -> None:
        """Bind the graph's contexts (built after this runtime, since each context sends through it)."""
        self.contexts = contexts
        self.open_sea = contexts[OPEN_SEA]
        self.rookery = contexts[ROOKERY]

    async def shutdown(self) -> None:
        """After the workers stopped: cancel external tasks, drain bus publishes, forget every trace."""
        external = [future for futures in self.external_tasks.values() for future in futures]
        for future in external:
            future.cancel()
        if external:
            await asyncio.gather(*external, return_exceptions=True)
        self.external_tasks.clear()
        if self.bus_tasks:
            await asyncio.gather(*self.bus_tasks, return_exceptions=True)
            self.bus_tasks.clear()
        self.trace_counts.clear()
        self.cancelled.clear()
        self.trace_events.clear()
        self.cancel_hooks.clear()
        for waiters in self.trace_capacity_waiters.values():
            for waiter in waiters:
                waiter.set()
        self.trace_capacity_waiters.clear()
        for listener in list(self.trace_listeners):
            listener.flow_stopped()

    def is_repeated_wm(self, msg: Any) -> bool:
        if isinstance(msg, Message):
            payload = msg.payload
            if isinstance(payload, WM):
                last = self.latest_wm_hops.get(msg.trace_id)
                return last is not None and payload.hops == last
        return False

    def is_trace_cancelled(self, trace_id: Any) -> bool:
        if trace_id in self.cancelled:
            return True
        event = self.trace_events.get(trace_id)
        return event is not None and event.is_set()

    def ensure_trace_event(self, trace_id: str) -> asyncio.Event:
        """Return (creating it if needed) an event that is set when ``trace_id`` is cancelled."""
        event = self.trace_events.get(trace_id)
        if event is None:
            event = self.trace_events[trace_id] = asyncio.Event()
            if trace_id in self.cancelled:
                event.set()
        return event

    def register_external_task(self, trace_id: str, task: asyncio.Future[Any]) -> None:
        """Track a task working for ``trace_id`` so that ``stop()`` cancels it."""
        if trace_id is None:
            return
        tasks = self.external_tasks.setdefault(trace_id, set())
        tasks.add(task)

        def _cleanup(finished: asyncio.Future[Any]) -> None:
            remaining = self.external_tasks.get(trace_id)
            if remaining is not None:
                remaining.discard(finished)
                if not remaining:
                    self.external_tasks.pop(trace_id, None)

        task.add_done_callback(_cleanup)

    def on_trace_cancel(self, trace_id: Any, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when ``trace_id`` is cancelled; returns the function that unregisters it."""
        hooks = self.cancel_hooks.setdefault(trace_id, [])
        hooks.append(callback)

        def _unregister() -> None:
            remaining = self.cancel_hooks.get(trace_id)
            if remaining is not None:
                with suppress(ValueError):
                    remaining.remove(callback)
                if not remaining:
                    self.cancel_hooks.pop(trace_id, None)

        return _unregister

    def worker_for_current_task(self) -> Worker | None:
        current = asyncio.current_task()
        for worker in self.workers:
            if worker.task is current:
                return worker
        return None

    async def cancel(self, trace_id: str) -> bool:
        """Stop all work of ``trace_id``: queued messages are dropped, running nodes are cancelled.

        Returns ``False`` when the trace has nothing pending. When it returns ``True`` (and is not called
        from a node of that trace), every node that was running the trace has finished unwinding,
        playbook subflows included. Other traces keep running.
        """
        busy = [worker for worker in self.workers if worker.trace_id == trace_id]
        if trace_id not in self.trace_counts and not busy and trace_id not in self.cancel_hooks:
            return False

        first = trace_id not in self.cancelled
        self.cancelled.add(trace_id)
        event = self.trace_events.get(trace_id)
        if event is not None:
            event.set()
        if first and self.observed(logging.INFO):
            await self.emit_event(
                event="trace_cancel_start",
                node=OPEN_SEA,
                context=self.open_sea,
                trace_id=trace_id,
                attempt=0,
                latency_ms=None,
                level=logging.INFO,
                extra={"pending": self.trace_counts.get(trace_id, 0)},
            )

        for context in list(self.contexts.values()):
            for item in context._inbox.drop(lambda item: trace_of(item) == trace_id):
                await self.finalize_message(item)

        current = asyncio.current_task()
        unwinding: list[asyncio.Future[None]] = []
        loop = asyncio.get_running_loop()
        for worker in self.workers:
            if worker.trace_id != trace_id or worker.task is None:
                continue
            if not worker.cancel_pending:
                worker.cancel_pending = True
                worker.task.cancel()
            if worker.task is not current:
                if worker.unwound is None:
                    worker.unwound = loop.create_future()
                unwinding.append(worker.unwound)
        for hook in self.cancel_hooks.pop(trace_id, ()):
            hook()
        for listener in list(self.trace_listeners):
            listener.trace_cancelled(trace_id)
        if unwinding:
            await asyncio.wait(unwinding)
        return True

    def finalize(self, message: Any) -> Any:
        """Count ``message`` as done; return its trace id if that ended a cancelled trace."""
        trace_id = trace_of(message)
        if trace_id is None:
            return None
        counts = self.trace_counts
        remaining = counts.get(trace_id)
        if remaining is None:
            return None
        if remaining > 1:
            counts[trace_id] = remaining - 1
            if self.trace_capacity_waiters and (
                self.queue_maxsize <= 0 or remaining - 1 <= self.queue_maxsize
            ):
                self.notify_trace_capacity(trace_id)
            return None
        del counts[trace_id]
        finished_cancel = False
        if self.cancelled:
            finished_cancel = trace_id in self.cancelled
            self.cancelled.discard(trace_id)
        if self.trace_events:
            event = self.trace_events.pop(trace_id, None)
            finished_cancel = finished_cancel or (event is not None and event.is_set())
        if self.trace_capacity_waiters:
            self.notify_trace_capacity(trace_id)
        if self.latest_wm_hops:
            self.latest_wm_hops.pop(trace_id, None)
        if self.trace_listeners:
            for listener in list(self.trace_listeners):
                listener.trace_idle(trace_id)
        return trace_id if finished_cancel else None

    async def finalize_message(self, message: Any) -> None:
        finished = self.finalize(message)
        if finished is not None and self.observed(logging.INFO):
            await self.emit_event(
                event="trace_cancel_finish",
                node=ROOKERY,
                context=self.rookery,
                trace_id=finished,
                attempt=0,
                latency_ms=None,
                level=logging.INFO,
            )

    def on_message_enqueued(self, message: Any) -> None:
        trace_id = trace_of(message)
        if trace_id is not None:
            counts = self.trace_counts
            counts[trace_id] = counts.get(trace_id, 0) + 1

    async def await_trace_capacity(self, trace_id: str, *, offset: int = 0) -> None:
        if self.queue_maxsize <= 0:
            return
        while True:
            pending = self.trace_counts.get(trace_id, 0)
            if max(pending - offset, 0) < self.queue_maxsize:
                return
            waiter = asyncio.Event()
            waiters = self.trace_capacity_waiters.setdefault(trace_id, [])
            waiters.append(waiter)
            try:
                await waiter.wait()
            finally:
                remaining = self.trace_capacity_waiters.get(trace_id)
                if remaining is not None:
                    with suppress(ValueError):
                        remaining.remove(waiter)
                    if not remaining:
                        self.trace_capacity_waiters.pop(trace_id, None)

    def notify_trace_capacity(self, trace_id: str) -> None:
        waiters = self.trace_capacity_waiters.pop(trace_id, None)
        for waiter in waiters or ():
            waiter.set()

    def add_trace_listener(self, listener: TraceListener) -> None:
        if listener not in self.trace_listeners:
            self.trace_listeners.append(listener)

    def track_untraced_results(self) -> dict[int, Any]:
        """Start remembering the trace of results that reach Rookery without a trace id of their own.

        A node may return a bare payload (a dict, a model) rather than a :class:`Message`; whoever serves
        traces at Rookery (the A2A adapter) looks up ``id(item) -> trace_id`` here, popping the entry.
        """
        if self.untraced is None:
            self.untraced = {}
        return self.untraced

    def tag_untraced(self, floe_target: Any, item: Any, trace_id: Any = None) -> None:
        """Remember which trace ``item`` (no trace id of its own) belongs to, when it is bound for Rookery."""
        if self.untraced is None or floe_target is not ROOKERY:
            return
        if trace_id is None:
            worker = self.worker_for_current_task()
            trace_id = None if worker is None else worker.trace_id
        if trace_id is not None:
            self.untraced[id(item)] = trace_id

    async def send_to_floe(self, floe: Floe, message: Any) -> None:
        trace_id = trace_of(message)
        if trace_id is not None:
            counts = self.trace_counts
            counts[trace_id] = counts.get(trace_id, 0) + 1
        elif self.untraced is not None:
            self.tag_untraced(floe.target, message)
        if self.message_bus is not None:
            await self.publish_to_bus(floe.source, floe.target, message)
        queue = floe.queue
        if 0 < queue.maxsize <= queue._count:
            await queue.put(message)
        else:
            queue.put_nowait(message)

    def send_to_floe_nowait(self, floe: Floe, message: Any) -> None:
        queue = floe.queue
        if queue.full():
            raise asyncio.QueueFull
        self.on_message_enqueued(message)
        if self.untraced is not None and trace_of(message) is None:
            self.tag_untraced(floe.target, message)
        if self.message_bus is not None:
            self.schedule_bus_publish(floe.source, floe.target, message)
        queue.put_nowait(message)

    @staticmethod
    def node_label(node: Node | Endpoint | None) -> str | None:
        if node is None:
            return None
        return getattr(node, "name", None) or getattr(node, "node_id", None)

    def build_bus_envelope(
        self, source: Node | Endpoint | None, target: Node | Endpoint | None, message: Any
    ) -> BusEnvelope:
        source_name = self.node_label(source)
        target_name = self.node_label(target)
        headers: Mapping[str, Any] | None = None
        meta: Mapping[str, Any] | None = None
        if isinstance(message, Message):
            headers = message.headers.model_dump()
            meta = dict(message.meta)
        return BusEnvelope(
            edge=f"{source_name or '*'}->{target_name or '*'}",
            source=source_name,
            target=target_name,
            trace_id=trace_of(message),
            payload=message,
            headers=headers,
            meta=meta,
        )

    async def publish_to_bus(
        self, source: Node | Endpoint | None, target: Node | Endpoint | None, message: Any
    ) -> None:
        if self.message_bus is None:
            return
        envelope = self.build_bus_envelope(source, target, message)
        try:
            await self.message_bus.publish(envelope)
        except Exception as exc:
            logger.exception(
                "message_bus_publish_failed",
                extra={
                    "event": "message_bus_publish_failed",
                    "edge": envelope.edge,
                    "trace_id": envelope.trace_id,
                    "exception": repr(exc),
                },
            )

    def schedule_bus_publish(
        self, source: Node | Endpoint | None, target: Node | Endpoint | None, message: Any
    ) -> None:
        task = asyncio.get_running_loop().create_task(self.publish_to_bus(source, target, message))
        self.bus_tasks.add(task)
        task.add_done_callback(self.bus_tasks.discard)

    async def emit_to_rookery(self, message: Any, *, source: Node | Endpoint | None = None) -> None:
        """Deliver ``message`` to Rookery whatever the graph's edges are."""
        incoming = self.rookery._incoming
        floe = incoming.get(source) if source is not None else None
        if floe is None and incoming:
            floe = next(iter(incoming.values()))
        if floe is not None:
            await self.send_to_floe(floe, message)
        else:
            self.on_message_enqueued(message)
            if self.untraced is not None and trace_of(message) is None:
                self.tag_untraced(ROOKERY, message)
            if self.message_bus is not None:
                await self.publish_to_bus(source, ROOKERY, message)
            self.rookery._buffer.append(message)
        if isinstance(message, Message) and isinstance(message.payload, WM):
            self.latest_wm_hops[message.trace_id] = message.payload.hops

    async def load_history(self, trace_id: str) -> Sequence[StoredEvent]:
        """Return the persisted history of ``trace_id`` from the state store."""
        if self.state_store is None:
            raise RuntimeError("flow was created without a state_store")
        return await self.state_store.load_history(trace_id)

    async def save_remote_binding(self, binding: RemoteBinding) -> None:
        """Persist a remote binding if a state store is configured (failures are logged)."""
        if self.state_store is None:
            return
        try:
            await self.state_store.save_remote_binding(binding)
        except Exception as exc:
            logger.exception(
                "state_store_binding_failed",
                extra={
                    "event": "state_store_binding_failed",
                    "trace_id": binding.trace_id,
                    "context_id": binding.context_id,
                    "task_id": binding.task_id,
                    "agent_url": binding.agent_url,
                    "exception": repr(exc),
                },
            )

    async def record_remote_event(
        self,
        *,
        event: str,
        node: Node,
        context: Context,
        trace_id: str | None,
        latency_ms: float | None,
        level: int = logging.INFO,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Emit a :class:`FlowEvent` describing remote transport activity."""
        if self.observed(level):
            await self.emit_event(
                event=event,
                node=node,
                context=context,
                trace_id=trace_id,
                attempt=0,
                latency_ms=latency_ms,
                level=level,
                extra=dict(extra or {}),
            )

    def observed(self, level: int) -> bool:
        return bool(self.middlewares) or self.state_store is not None or _log_enabled(level)

    def trace_inflight(self, trace_id: Any) -> int:
        """Node invocations of ``trace_id`` running now (PenguiFlow's count: not the event's own node
        before or after its call, nor external tasks)."""
        return sum(1 for worker in self.workers if worker.invoking and worker.trace_id == trace_id)

    async def emit_event(
        self,
        *,
        event: str,
        node: Node | Endpoint,
        context: Context,
        trace_id: Any,
        attempt: int,
        latency_ms: float | None,
        level: int,
        extra: dict[str, Any] | None = None,
        exc_info: ExcInfo | None = None,
    ) -> None:
        node_name = getattr(node, "name", None)
        node_id = getattr(node, "node_id", node_name)
        trace_pending: int | None = None
        trace_inflight = 0
        trace_cancelled = False
        if trace_id is not None:
            trace_pending = self.trace_counts.get(trace_id, 0)
            trace_inflight = self.trace_inflight(trace_id)
            trace_cancelled = self.is_trace_cancelled(trace_id)
        event_obj = FlowEvent(
            event_type=event,
            ts=_clock.wall_time(),
            node_name=node_name,
            node_id=node_id,
            trace_id=trace_id,
            attempt=attempt,
            latency_ms=latency_ms,
            queue_depth_in=context.queue_depth_in(),
            queue_depth_out=context.queue_depth_out(),
            outgoing_edges=context.outgoing_count(),
            queue_maxsize=self.queue_maxsize,
            trace_pending=trace_pending,
            trace_inflight=trace_inflight,
            trace_cancelled=trace_cancelled,
            extra=extra or {},
        )
        if _log_enabled(level):
            logger.log(level, event, extra=event_obj.to_payload(), exc_info=exc_info)
        if self.state_store is not None:
            stored = StoredEvent.from_flow_event(event_obj)
            try:
                await self.state_store.save_event(stored)
            except Exception as exc:
                logger.exception(
                    "state_store_save_failed",
                    extra={
                        "event": "state_store_save_failed",
                        "trace_id": stored.trace_id,
                        "kind": stored.kind,
                        "exception": repr(exc),
                    },
                )
        for middleware in list(self.middlewares):
            try:
                await middleware(event_obj)
            except Exception as exc:
                logger.exception(
                    "middleware_error",
                    extra={
                        "event": "middleware_error",
                        "node_name": node_name,
                        "node_id": node_id,
                        "exception": repr(exc),
                    },
                )
