"""The flow runtime: contexts, edges (floes) and the :class:`Flow` that runs a graph of nodes.

Design (what makes a hop cheap):

- one worker task per node; a node's function runs inside that task (no task per message);
- each consumer has one inbox (a deque of ``(edge, message)`` in arrival order); each edge keeps its own
  count for backpressure, so a full edge makes ``emit`` wait and nothing is ever dropped;
- per-trace bookkeeping lives in plain dicts; events are built only when someone listens (middlewares,
  a state store, or a logger enabled for the event's level);
- ``cancel(trace_id)`` drops the trace's queued messages and cancels the workers that are running it,
  which absorb that cancellation and carry on with the next message.

Ingress and egress are the implicit endpoints ``OpenSea`` and ``Rookery``.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from . import _clock
from .bus import BusEnvelope, MessageBus
from .errors import CycleError, FlowError, FlowErrorCode, TraceCancelled
from .metrics import FlowEvent
from .middlewares import Middleware
from .node import Node
from .registry import ModelRegistry
from .state import RemoteBinding, StateStore, StoredEvent
from .types import WM, FinalAnswer, Message, StreamChunk

__all__ = [
    "DEFAULT_QUEUE_MAXSIZE",
    "Context",
    "CycleError",
    "Floe",
    "Flow",
    "PenguiFlow",
    "TraceCancelled",
    "call_playbook",
    "create",
]

logger = logging.getLogger("podium.flow.core")
_log_enabled = logger.isEnabledFor

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

BUDGET_EXCEEDED_TEXT = "Hop budget exhausted"
DEADLINE_EXCEEDED_TEXT = "Deadline exceeded"
TOKEN_BUDGET_EXCEEDED_TEXT = "Token budget exhausted"

DEFAULT_QUEUE_MAXSIZE = 64


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A synthetic endpoint of every flow (``OpenSea`` for ingress, ``Rookery`` for egress)."""

    name: str


OPEN_SEA = Endpoint("OpenSea")
ROOKERY = Endpoint("Rookery")


def _trace_of(message: Any) -> Any:
    if type(message) is Message:
        return message.trace_id
    return getattr(message, "trace_id", None)


def _wake_one(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return


class _Inbox:
    """All messages waiting for one consumer, in arrival order, tagged with the edge they came by."""

    __slots__ = ("getters", "items")

    def __init__(self) -> None:
        self.items: deque[tuple[_EdgeQueue, Any]] = deque()
        self.getters: deque[asyncio.Future[None]] = deque()

    async def get(self) -> Any:
        items = self.items
        while not items:
            getter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                with suppress(ValueError):
                    self.getters.remove(getter)
                if items and not getter.cancelled():
                    _wake_one(self.getters)  # pass on a wake-up this getter will not use
                raise
        edge, item = items.popleft()
        edge._release()
        return item

    def drop(self, predicate: Callable[[Any], bool]) -> list[Any]:
        """Remove and return the items matching ``predicate``, freeing their edges' capacity."""
        dropped: list[tuple[_EdgeQueue, Any]] = [entry for entry in self.items if predicate(entry[1])]
        if dropped:
            kept = [entry for entry in self.items if not predicate(entry[1])]
            self.items.clear()
            self.items.extend(kept)
            for edge, _item in dropped:
                edge._release()
        return [item for _edge, item in dropped]


class _EdgeQueue:
    """The queue of one edge: a bounded count over its consumer's shared inbox.

    Offers the ``asyncio.Queue`` surface (``put``, ``put_nowait``, ``get``, ``get_nowait``, ``qsize``,
    ``empty``, ``full``, ``maxsize``) for code that inspects a floe directly.
    """

    __slots__ = ("_count", "_edge_getters", "_inbox", "_putters", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._count = 0
        self._inbox = _Inbox()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._edge_getters: list[asyncio.Future[None]] = []

    def qsize(self) -> int:
        return self._count

    def empty(self) -> bool:
        return self._count == 0

    def full(self) -> bool:
        return 0 < self.maxsize <= self._count

    def put_nowait(self, item: Any) -> None:
        if 0 < self.maxsize <= self._count:
            raise asyncio.QueueFull
        self._count += 1
        inbox = self._inbox
        inbox.items.append((self, item))
        if inbox.getters:
            _wake_one(inbox.getters)
        if self._edge_getters:
            for getter in self._edge_getters:
                if not getter.done():
                    getter.set_result(None)

    async def put(self, item: Any) -> None:
        while 0 < self.maxsize <= self._count:
            putter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._putters.append(putter)
            try:
                await putter
            except BaseException:
                putter.cancel()
                with suppress(ValueError):
                    self._putters.remove(putter)
                if not self.full() and not putter.cancelled():
                    _wake_one(self._putters)
                raise
        self.put_nowait(item)

    def _release(self) -> None:
        self._count -= 1
        if self._putters:
            _wake_one(self._putters)

    def get_nowait(self) -> Any:
        if self._count:
            items = self._inbox.items
            for index, (edge, item) in enumerate(items):
                if edge is self:
                    del items[index]
                    self._release()
                    return item
        raise asyncio.QueueEmpty

    async def get(self) -> Any:
        return await _fetch_from_edges((self,))


async def _fetch_from_edges(edges: Sequence[_EdgeQueue]) -> Any:
    while True:
        for edge in edges:
            if edge._count:
                return edge.get_nowait()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for edge in edges:
            edge._edge_getters.append(waiter)
        try:
            await waiter
        finally:
            for edge in edges:
                with suppress(ValueError):
                    edge._edge_getters.remove(waiter)


class Floe:
    """A queue-backed edge between two nodes (or a node and an endpoint)."""

    __slots__ = ("queue", "source", "target")

    def __init__(
        self, source: Node | Endpoint | None, target: Node | Endpoint | None, *, maxsize: int
    ) -> None:
        self.source = source
        self.target = target
        self.queue = _EdgeQueue(maxsize)

    def __repr__(self) -> str:
        source = getattr(self.source, "name", None)
        target = getattr(self.target, "name", None)
        return f"Floe({source}->{target}, depth={self.queue.qsize()})"


Target = Node | Endpoint | Sequence[Node | Endpoint] | None


class Context:
    """What a node sees of the flow: ``emit``, ``fetch``, ``emit_chunk``, ``call_playbook``."""

    __slots__ = (
        "_buffer",
        "_inbox",
        "_incoming",
        "_out_floes",
        "_outgoing",
        "_owner",
        "_runtime",
        "_stream_seq",
    )

    def __init__(self, owner: Node | Endpoint, runtime: Flow | None = None) -> None:
        self._owner = owner
        self._incoming: dict[Node | Endpoint, Floe] = {}
        self._outgoing: dict[Node | Endpoint, Floe] = {}
        self._out_floes: tuple[Floe, ...] = ()
        self._buffer: deque[Any] = deque()
        self._stream_seq: dict[str, int] = {}
        self._runtime = runtime
        self._inbox = _Inbox()

    @property
    def owner(self) -> Node | Endpoint:
        return self._owner

    @property
    def runtime(self) -> Flow | None:
        """The flow this context belongs to, if any."""
        return self._runtime

    def add_incoming_floe(self, floe: Floe) -> None:
        if floe.source is None:
            return
        self._incoming[floe.source] = floe
        floe.queue._inbox = self._inbox

    def add_outgoing_floe(self, floe: Floe) -> None:
        if floe.target is None:
            return
        self._outgoing[floe.target] = floe
        self._out_floes = tuple(self._outgoing.values())

    def _resolve_targets(self, targets: Target, mapping: dict[Node | Endpoint, Floe]) -> list[Floe]:
        if not mapping:
            return []
        if targets is None:
            return list(mapping.values())
        if isinstance(targets, Node | Endpoint):
            targets = [targets]
        resolved: list[Floe] = []
        for node in targets:
            floe = mapping.get(node)
            if floe is None:
                owner = getattr(self._owner, "name", self._owner)
                raise KeyError(f"Unknown target {getattr(node, 'name', node)} for {owner}")
            resolved.append(floe)
        return resolved

    def _require_runtime(self) -> Flow:
        if self._runtime is None:
            raise RuntimeError("Context is not attached to a running flow")
        return self._runtime

    async def emit(self, msg: Any, to: Target = None) -> None:
        """Send ``msg`` to every successor (or only to ``to``); waits while a target edge is full."""
        runtime = self._require_runtime()
        floes = self._out_floes if to is None else self._resolve_targets(to, self._outgoing)
        for floe in floes:
            await runtime._send_to_floe(floe, msg)

    def emit_nowait(self, msg: Any, to: Target = None) -> None:
        """Like :meth:`emit` but raises ``asyncio.QueueFull`` instead of waiting."""
        runtime = self._require_runtime()
        floes = self._out_floes if to is None else self._resolve_targets(to, self._outgoing)
        for floe in floes:
            runtime._send_to_floe_nowait(floe, msg)

    async def emit_chunk(
        self,
        *,
        parent: Message,
        text: str,
        stream_id: str | None = None,
        seq: int | None = None,
        done: bool = False,
        meta: dict[str, Any] | None = None,
        to: Target = None,
    ) -> StreamChunk:
        """Emit a :class:`StreamChunk` that inherits headers, trace id, deadline and meta from ``parent``.

        Sequence numbers count from 0 per ``stream_id`` (default: the parent's trace id) unless ``seq`` is
        given; ``done=True`` ends the stream and resets its counter. Returns the emitted chunk.
        """
        runtime = self._require_runtime()
        sid = stream_id or parent.trace_id
        first_chunk = sid not in self._stream_seq
        next_seq = self._stream_seq.get(sid, -1) + 1 if seq is None else seq
        self._stream_seq[sid] = next_seq
        chunk = StreamChunk(
            stream_id=sid, seq=next_seq, text=text, done=done, meta=dict(meta) if meta else {}
        )
        message = Message(
            payload=chunk,
            headers=parent.headers,
            trace_id=parent.trace_id,
            deadline_s=parent.deadline_s,
            meta=dict(parent.meta),
        )
        if not first_chunk:
            await runtime._await_trace_capacity(sid, offset=1)
        await self.emit(message, to=to)
        if done:
            self._stream_seq.pop(sid, None)
        return chunk

    def fetch_nowait(self, from_: Target = None) -> Any:
        if self._buffer:
            return self._buffer.popleft()
        if from_ is None:
            items = self._inbox.items
            if items:
                edge, item = items.popleft()
                edge._release()
                return item
            raise asyncio.QueueEmpty("no messages available")
        for floe in self._resolve_targets(from_, self._incoming):
            try:
                return floe.queue.get_nowait()
            except asyncio.QueueEmpty:
                continue
        raise asyncio.QueueEmpty("no messages available")

    async def fetch(self, from_: Target = None) -> Any:
        """Wait for the next incoming message (from any predecessor, or only from ``from_``)."""
        if self._buffer:
            return self._buffer.popleft()
        if from_ is None:
            if not self._incoming:
                raise RuntimeError("context has no incoming floes to fetch from")
            return await self._inbox.get()
        floes = self._resolve_targets(from_, self._incoming)
        if not floes:
            raise RuntimeError("context has no incoming floes to fetch from")
        return await _fetch_from_edges([floe.queue for floe in floes])

    async def fetch_any(self, from_: Target = None) -> Any:
        """Same as :meth:`fetch`: the inbox already merges all predecessors in arrival order."""
        return await self.fetch(from_)

    def outgoing_count(self) -> int:
        return len(self._outgoing)

    def queue_depth_in(self) -> int:
        return len(self._inbox.items)

    def queue_depth_out(self) -> int:
        return sum(floe.queue._count for floe in self._out_floes)

    async def call_playbook(
        self,
        playbook: PlaybookFactory,
        parent_msg: Message,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - PenguiFlow's signature
    ) -> Any:
        """Run a subflow for ``parent_msg``; returns its first Rookery payload (see :func:`call_playbook`)."""
        return await call_playbook(playbook, parent_msg, timeout=timeout, runtime=self._runtime)


class _TraceListener(Protocol):
    """Internal hook for patterns that keep per-trace state (``join_k``)."""

    def trace_idle(self, trace_id: str) -> None: ...

    def trace_cancelled(self, trace_id: str) -> None: ...

    def flow_stopped(self) -> None: ...


class _Worker:
    """The worker task of one node and the trace it is running right now."""

    __slots__ = ("cancel_pending", "context", "node", "task", "trace_id", "unwound")

    def __init__(self, node: Node, context: Context) -> None:
        self.node = node
        self.context = context
        self.task: asyncio.Task[None] | None = None
        self.trace_id: Any = None
        self.cancel_pending = False
        self.unwound: asyncio.Future[None] | None = None


class _Spec:
    """What a worker needs per node, resolved once at ``run()``."""

    __slots__ = ("adapter_in", "adapter_out", "expects_message", "func", "policy", "timeout_s")

    def __init__(self, node: Node, registry: ModelRegistry | None) -> None:
        self.func = node.func
        self.policy = node.policy
        self.timeout_s = node.policy.timeout_s
        self.adapter_in, self.adapter_out = node.adapters(registry)
        self.expects_message = False
        models = getattr(registry, "models", None)
        if models is not None:
            try:
                out_model = models(node.name)[1]
                self.expects_message = isinstance(out_model, type) and issubclass(out_model, Message)
            except Exception:
                self.expects_message = False


class Flow:
    """A running graph of nodes (``PenguiFlow`` is the same class under its PenguiFlow name).

    Args:
        *adjacencies: ``node.to(successors...)`` pairs.
        queue_maxsize: capacity of every edge; a full edge makes senders wait. ``<= 0`` is unbounded.
        allow_cycles: skip the cycle check (self-loops of ``allow_cycle`` nodes are always allowed).
        middlewares: async callables receiving every :class:`FlowEvent`.
        emit_errors_to_rookery: deliver a :class:`FlowError` to ``fetch()`` when a node fails for good.
        state_store: persists events and remote bindings.
        message_bus: receives every message put on an edge.
    """

    def __init__(
        self,
        *adjacencies: tuple[Node, Sequence[Node]],
        queue_maxsize: int = DEFAULT_QUEUE_MAXSIZE,
        allow_cycles: bool = False,
        middlewares: Sequence[Middleware] | None = None,
        emit_errors_to_rookery: bool = False,
        state_store: StateStore | None = None,
        message_bus: MessageBus | None = None,
    ) -> None:
        self._queue_maxsize = queue_maxsize
        self._allow_cycles = allow_cycles
        self._nodes: dict[Node, None] = {}
        self._adjacency: dict[Node, dict[Node, None]] = {}
        self._contexts: dict[Node | Endpoint, Context] = {}
        self._floes: list[Floe] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._workers: list[_Worker] = []
        self._running = False
        self._stopping = False
        self._registry: Any | None = None
        self._specs: dict[Node, _Spec] = {}
        self._middlewares: list[Middleware] = list(middlewares or [])
        self._trace_counts: dict[Any, int] = {}
        self._cancelled: set[Any] = set()
        self._trace_events: dict[str, asyncio.Event] = {}
        self._cancel_hooks: dict[Any, list[Callable[[], None]]] = {}
        self._external_tasks: dict[str, set[asyncio.Future[Any]]] = {}
        self._trace_capacity_waiters: dict[str, list[asyncio.Event]] = {}
        self._trace_listeners: list[_TraceListener] = []
        self._latest_wm_hops: dict[str, int] = {}
        self._emit_errors_to_rookery = emit_errors_to_rookery
        self._state_store = state_store
        self._message_bus = message_bus
        self._bus_tasks: set[asyncio.Task[None]] = set()
        self._build_graph(adjacencies)
        self._open_sea = self._contexts[OPEN_SEA]
        self._rookery = self._contexts[ROOKERY]

    # -- graph ---------------------------------------------------------------------------------------------

    @property
    def registry(self) -> Any | None:
        return self._registry

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The nodes of the graph, in declaration order."""
        return tuple(self._nodes)

    @property
    def floes(self) -> tuple[Floe, ...]:
        """Every edge, including the ingress (OpenSea) and egress (Rookery) ones."""
        return tuple(self._floes)

    def add_middleware(self, middleware: Middleware) -> None:
        self._middlewares.append(middleware)

    def _build_graph(self, adjacencies: Sequence[tuple[Node, Sequence[Node]]]) -> None:
        for start, successors in adjacencies:
            self._nodes.setdefault(start)
            self._adjacency.setdefault(start, {})
            for succ in successors:
                self._nodes.setdefault(succ)
                self._adjacency.setdefault(succ, {})
                self._adjacency[start][succ] = None
        names: dict[str, Node] = {}
        for node in self._nodes:
            if names.setdefault(node.name, node) is not node:
                logger.warning("duplicate node name %r in one flow; routing by name is ambiguous", node.name)
        self._detect_cycles()

        for node in self._nodes:
            self._contexts[node] = Context(node, self)
        self._contexts[OPEN_SEA] = Context(OPEN_SEA, self)
        self._contexts[ROOKERY] = Context(ROOKERY, self)

        has_parent: set[Node] = set()
        for parent, children in self._adjacency.items():
            for child in children:
                if not (parent is child and parent.allow_cycle):
                    has_parent.add(child)
                self._link(parent, child)
        for node in self._nodes:
            if node not in has_parent:
                self._link(OPEN_SEA, node)
        for node in self._nodes:
            children = self._adjacency.get(node, {})
            if not children or list(children) == [node]:
                self._link(node, ROOKERY)

    def _link(self, source: Node | Endpoint, target: Node | Endpoint) -> None:
        floe = Floe(source, target, maxsize=self._queue_maxsize)
        self._floes.append(floe)
        self._contexts[source].add_outgoing_floe(floe)
        self._contexts[target].add_incoming_floe(floe)

    def _detect_cycles(self) -> None:
        if self._allow_cycles:
            return
        adjacency = {
            node: [child for child in children if not (child is node and node.allow_cycle)]
            for node, children in self._adjacency.items()
        }
        indegree = dict.fromkeys(self._nodes, 0)
        for children in adjacency.values():
            for child in children:
                indegree[child] += 1
        ready = [node for node, degree in indegree.items() if degree == 0]
        visited = 0
        while ready:
            node = ready.pop()
            visited += 1
            for succ in adjacency.get(node, ()):
                indegree[succ] -= 1
                if indegree[succ] == 0:
                    ready.append(succ)
        if visited != len(self._nodes):
            raise CycleError("Flow contains a cycle; enable allow_cycles to bypass")

    # -- lifecycle -----------------------------------------------------------------------------------------

    def run(self, *, registry: Any | None = None) -> None:
        """Start one worker task per node; with a registry, every validating node must be registered."""
        if self._running:
            raise RuntimeError("flow is already running")
        if registry is not None:
            self._ensure_registry_covers_nodes(registry)
        loop = asyncio.get_running_loop()
        self._registry = registry
        self._specs = {node: _Spec(node, registry) for node in self._nodes}
        self._running = True
        for node in self._nodes:
            worker = _Worker(node, self._contexts[node])
            worker.task = loop.create_task(self._node_worker(worker), name=f"podium.flow:{node.name}")
            self._workers.append(worker)
            self._tasks.append(worker.task)

    async def stop(self) -> None:
        """Cancel the workers and wait for them; idempotent."""
        if not self._running:
            return
        self._stopping = True
        try:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
            self._workers.clear()
            external = [future for futures in self._external_tasks.values() for future in futures]
            for future in external:
                future.cancel()
            if external:
                await asyncio.gather(*external, return_exceptions=True)
            self._external_tasks.clear()
            if self._bus_tasks:
                await asyncio.gather(*self._bus_tasks, return_exceptions=True)
                self._bus_tasks.clear()
            self._trace_counts.clear()
            self._cancelled.clear()
            self._trace_events.clear()
            self._cancel_hooks.clear()
            for waiters in self._trace_capacity_waiters.values():
                for waiter in waiters:
                    waiter.set()
            self._trace_capacity_waiters.clear()
            for listener in list(self._trace_listeners):
                listener.flow_stopped()
        finally:
            self._stopping = False
            self._running = False

    async def __aenter__(self) -> Flow:
        if not self._running:
            self.run()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _ensure_registry_covers_nodes(self, registry: ModelRegistry) -> None:
        missing: list[str] = []
        for node in self._nodes:
            if node.policy.validate == "none":
                continue
            try:
                registry.adapters(node.name)
            except KeyError:
                missing.append(node.name)
        if missing:
            names = ", ".join(sorted(missing))
            raise RuntimeError(f"ModelRegistry is missing entries for nodes requiring validation: {names}")

    # -- ingress / egress ----------------------------------------------------------------------------------

    def _is_repeated_wm(self, msg: Any) -> bool:
        if isinstance(msg, Message):
            payload = msg.payload
            if isinstance(payload, WM):
                last = self._latest_wm_hops.get(msg.trace_id)
                return last is not None and payload.hops == last
        return False

    async def emit(self, msg: Any, to: Node | Sequence[Node] | None = None) -> None:
        """Put ``msg`` into OpenSea (all ingress nodes, or ``to``); waits while an ingress edge is full."""
        if self._is_repeated_wm(msg):
            return
        await self._open_sea.emit(msg, to)

    def emit_nowait(self, msg: Any, to: Node | Sequence[Node] | None = None) -> None:
        """Like :meth:`emit` but raises ``asyncio.QueueFull`` instead of waiting."""
        if self._is_repeated_wm(msg):
            return
        self._open_sea.emit_nowait(msg, to)

    async def emit_chunk(
        self,
        *,
        parent: Message,
        text: str,
        stream_id: str | None = None,
        seq: int | None = None,
        done: bool = False,
        meta: dict[str, Any] | None = None,
        to: Node | Sequence[Node] | None = None,
    ) -> StreamChunk:
        """Emit a streaming chunk from outside the flow, through OpenSea."""
        return await self._open_sea.emit_chunk(
            parent=parent, text=text, stream_id=stream_id, seq=seq, done=done, meta=meta, to=to
        )

    async def fetch(self, from_: Node | Sequence[Node] | None = None) -> Any:
        """Wait for the next message at Rookery."""
        result = await self._rookery.fetch(from_)
        await self._finalize_message(result)
        return result

    async def fetch_any(self, from_: Node | Sequence[Node] | None = None) -> Any:
        return await self.fetch(from_)

    # -- cancellation --------------------------------------------------------------------------------------

    def _is_trace_cancelled(self, trace_id: Any) -> bool:
        if trace_id in self._cancelled:
            return True
        event = self._trace_events.get(trace_id)
        return event is not None and event.is_set()

    def ensure_trace_event(self, trace_id: str) -> asyncio.Event:
        """Return (creating it if needed) an event that is set when ``trace_id`` is cancelled."""
        event = self._trace_events.get(trace_id)
        if event is None:
            event = self._trace_events[trace_id] = asyncio.Event()
            if trace_id in self._cancelled:
                event.set()
        return event

    def register_external_task(self, trace_id: str, task: asyncio.Future[Any]) -> None:
        """Track a task working for ``trace_id`` so that ``stop()`` cancels it."""
        if trace_id is None:
            return
        tasks = self._external_tasks.setdefault(trace_id, set())
        tasks.add(task)

        def _cleanup(finished: asyncio.Future[Any]) -> None:
            remaining = self._external_tasks.get(trace_id)
            if remaining is not None:
                remaining.discard(finished)
                if not remaining:
                    self._external_tasks.pop(trace_id, None)

        task.add_done_callback(_cleanup)

    def _on_trace_cancel(self, trace_id: Any, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when ``trace_id`` is cancelled; returns the function that unregisters it."""
        hooks = self._cancel_hooks.setdefault(trace_id, [])
        hooks.append(callback)

        def _unregister() -> None:
            remaining = self._cancel_hooks.get(trace_id)
            if remaining is not None:
                with suppress(ValueError):
                    remaining.remove(callback)
                if not remaining:
                    self._cancel_hooks.pop(trace_id, None)

        return _unregister

    def _worker_for_current_task(self) -> _Worker | None:
        current = asyncio.current_task()
        for worker in self._workers:
            if worker.task is current:
                return worker
        return None

    async def cancel(self, trace_id: str) -> bool:
        """Stop all work of ``trace_id``: queued messages are dropped, running nodes are cancelled.

        Returns ``False`` when the trace has nothing pending. When it returns ``True`` (and is not called
        from a node of that trace), every node that was running the trace has finished unwinding,
        playbook subflows included. Other traces keep running.
        """
        if not self._running:
            raise RuntimeError("flow is not running")
        busy = [worker for worker in self._workers if worker.trace_id == trace_id]
        if trace_id not in self._trace_counts and not busy and trace_id not in self._cancel_hooks:
            return False

        first = trace_id not in self._cancelled
        self._cancelled.add(trace_id)
        event = self._trace_events.get(trace_id)
        if event is not None:
            event.set()
        if first and self._observed(logging.INFO):
            await self._emit_event(
                event="trace_cancel_start",
                node=OPEN_SEA,
                context=self._open_sea,
                trace_id=trace_id,
                attempt=0,
                latency_ms=None,
                level=logging.INFO,
                extra={"pending": self._trace_counts.get(trace_id, 0)},
            )

        for context in list(self._contexts.values()):
            for item in context._inbox.drop(lambda item: _trace_of(item) == trace_id):
                await self._finalize_message(item)

        current = asyncio.current_task()
        unwinding: list[asyncio.Future[None]] = []
        loop = asyncio.get_running_loop()
        for worker in self._workers:
            if worker.trace_id != trace_id or worker.task is None:
                continue
            if not worker.cancel_pending:
                worker.cancel_pending = True
                worker.task.cancel()
            if worker.task is not current:
                if worker.unwound is None:
                    worker.unwound = loop.create_future()
                unwinding.append(worker.unwound)
        for hook in self._cancel_hooks.pop(trace_id, ()):
            hook()
        for listener in list(self._trace_listeners):
            listener.trace_cancelled(trace_id)
        if unwinding:
            await asyncio.wait(unwinding)
        return True

    # -- per-trace bookkeeping -----------------------------------------------------------------------------

    def _finalize(self, message: Any) -> Any:
        """Count ``message`` as done; return its trace id if that ended a cancelled trace."""
        trace_id = _trace_of(message)
        if trace_id is None:
            return None
        counts = self._trace_counts
        remaining = counts.get(trace_id)
        if remaining is None:
            return None
        if remaining > 1:
            counts[trace_id] = remaining - 1
            if self._trace_capacity_waiters and (
                self._queue_maxsize <= 0 or remaining - 1 <= self._queue_maxsize
            ):
                self._notify_trace_capacity(trace_id)
            return None
        del counts[trace_id]
        finished_cancel = False
        if self._cancelled:
            finished_cancel = trace_id in self._cancelled
            self._cancelled.discard(trace_id)
        if self._trace_events:
            event = self._trace_events.pop(trace_id, None)
            finished_cancel = finished_cancel or (event is not None and event.is_set())
        if self._trace_capacity_waiters:
            self._notify_trace_capacity(trace_id)
        if self._latest_wm_hops:
            self._latest_wm_hops.pop(trace_id, None)
        if self._trace_listeners:
            for listener in list(self._trace_listeners):
                listener.trace_idle(trace_id)
        return trace_id if finished_cancel else None

    async def _finalize_message(self, message: Any) -> None:
        finished = self._finalize(message)
        if finished is not None and self._observed(logging.INFO):
            await self._emit_event(
                event="trace_cancel_finish",
                node=ROOKERY,
                context=self._rookery,
                trace_id=finished,
                attempt=0,
                latency_ms=None,
                level=logging.INFO,
            )

    def _on_message_enqueued(self, message: Any) -> None:
        trace_id = _trace_of(message)
        if trace_id is not None:
            counts = self._trace_counts
            counts[trace_id] = counts.get(trace_id, 0) + 1

    async def _await_trace_capacity(self, trace_id: str, *, offset: int = 0) -> None:
        if self._queue_maxsize <= 0:
            return
        while True:
            pending = self._trace_counts.get(trace_id, 0)
            if max(pending - offset, 0) < self._queue_maxsize:
                return
            waiter = asyncio.Event()
            waiters = self._trace_capacity_waiters.setdefault(trace_id, [])
            waiters.append(waiter)
            try:
                await waiter.wait()
            finally:
                remaining = self._trace_capacity_waiters.get(trace_id)
                if remaining is not None:
                    with suppress(ValueError):
                        remaining.remove(waiter)
                    if not remaining:
                        self._trace_capacity_waiters.pop(trace_id, None)

    def _notify_trace_capacity(self, trace_id: str) -> None:
        waiters = self._trace_capacity_waiters.pop(trace_id, None)
        for waiter in waiters or ():
            waiter.set()

    def _add_trace_listener(self, listener: _TraceListener) -> None:
        if listener not in self._trace_listeners:
            self._trace_listeners.append(listener)

    # -- sending -------------------------------------------------------------------------------------------

    async def _send_to_floe(self, floe: Floe, message: Any) -> None:
        trace_id = _trace_of(message)
        if trace_id is not None:
            counts = self._trace_counts
            counts[trace_id] = counts.get(trace_id, 0) + 1
        if self._message_bus is not None:
            await self._publish_to_bus(floe.source, floe.target, message)
        queue = floe.queue
        if 0 < queue.maxsize <= queue._count:
            await queue.put(message)
        else:
            queue.put_nowait(message)

    def _send_to_floe_nowait(self, floe: Floe, message: Any) -> None:
        queue = floe.queue
        if queue.full():
            raise asyncio.QueueFull
        self._on_message_enqueued(message)
        if self._message_bus is not None:
            self._schedule_bus_publish(floe.source, floe.target, message)
        queue.put_nowait(message)

    @staticmethod
    def _node_label(node: Node | Endpoint | None) -> str | None:
        if node is None:
            return None
        return getattr(node, "name", None) or getattr(node, "node_id", None)

    def _build_bus_envelope(
        self, source: Node | Endpoint | None, target: Node | Endpoint | None, message: Any
    ) -> BusEnvelope:
        source_name = self._node_label(source)
        target_name = self._node_label(target)
        headers: Mapping[str, Any] | None = None
        meta: Mapping[str, Any] | None = None
        if isinstance(message, Message):
            headers = message.headers.model_dump()
            meta = dict(message.meta)
        return BusEnvelope(
            edge=f"{source_name or '*'}->{target_name or '*'}",
            source=source_name,
            target=target_name,
            trace_id=_trace_of(message),
            payload=message,
            headers=headers,
            meta=meta,
        )

    async def _publish_to_bus(
        self, source: Node | Endpoint | None, target: Node | Endpoint | None, message: Any
    ) -> None:
        if self._message_bus is None:
            return
        envelope = self._build_bus_envelope(source, target, message)
        try:
            await self._message_bus.publish(envelope)
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

    def _schedule_bus_publish(
        self, source: Node | Endpoint | None, target: Node | Endpoint | None, message: Any
    ) -> None:
        task = asyncio.get_running_loop().create_task(self._publish_to_bus(source, target, message))
        self._bus_tasks.add(task)
        task.add_done_callback(self._bus_tasks.discard)

    async def _emit_to_rookery(self, message: Any, *, source: Node | Endpoint | None = None) -> None:
        """Deliver ``message`` to Rookery whatever the graph's edges are."""
        incoming = self._rookery._incoming
        floe = incoming.get(source) if source is not None else None
        if floe is None and incoming:
            floe = next(iter(incoming.values()))
        if floe is not None:
            await self._send_to_floe(floe, message)
        else:
            self._on_message_enqueued(message)
            if self._message_bus is not None:
                await self._publish_to_bus(source, ROOKERY, message)
            self._rookery._buffer.append(message)
        if isinstance(message, Message) and isinstance(message.payload, WM):
            self._latest_wm_hops[message.trace_id] = message.payload.hops

    # -- history and remote hooks --------------------------------------------------------------------------

    async def load_history(self, trace_id: str) -> Sequence[StoredEvent]:
        """Return the persisted history of ``trace_id`` from the state store."""
        if self._state_store is None:
            raise RuntimeError("flow was created without a state_store")
        return await self._state_store.load_history(trace_id)

    async def save_remote_binding(self, binding: RemoteBinding) -> None:
        """Persist a remote binding if a state store is configured (failures are logged)."""
        if self._state_store is None:
            return
        try:
            await self._state_store.save_remote_binding(binding)
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
        if self._observed(level):
            await self._emit_event(
                event=event,
                node=node,
                context=context,
                trace_id=trace_id,
                attempt=0,
                latency_ms=latency_ms,
                level=level,
                extra=dict(extra or {}),
            )

    # -- the worker ----------------------------------------------------------------------------------------

    def _observed(self, level: int) -> bool:
        return bool(self._middlewares) or self._state_store is not None or _log_enabled(level)

    async def _node_worker(self, worker: _Worker) -> None:
        node = worker.node
        context = worker.context
        spec = self._specs[node]
        inbox = context._inbox
        items = inbox.items
        buffer = context._buffer
        while True:
            try:
                if buffer:
                    message = buffer.popleft()
                elif items:
                    edge, message = items.popleft()
                    edge._release()
                else:
                    message = await inbox.get()
            except asyncio.CancelledError:
                if self._observed(logging.DEBUG):
                    await self._emit_event(
                        event="node_cancelled",
                        node=node,
                        context=context,
                        trace_id=None,
                        attempt=0,
                        latency_ms=None,
                        level=logging.DEBUG,
                    )
                raise

            trace_id = _trace_of(message)
            deadline_s = message.deadline_s if isinstance(message, Message) else None
            if deadline_s is not None and _clock.wall_time() > deadline_s:
                await self._skip_expired(node, context, message, trace_id)
                continue
            if (
                trace_id is not None
                and (self._cancelled or self._trace_events)
                and self._is_trace_cancelled(trace_id)
            ):
                if self._observed(logging.INFO):
                    await self._emit_event(
                        event="trace_cancel_drop",
                        node=node,
                        context=context,
                        trace_id=trace_id,
                        attempt=0,
                        latency_ms=None,
                        level=logging.INFO,
                    )
                await self._finalize_message(message)
                continue

            worker.trace_id = trace_id
            try:
                await self._execute(spec, node, context, message, trace_id)
            except TraceCancelled:
                await self._trace_cancelled_event(node, context, trace_id)
            except asyncio.CancelledError:
                task = worker.task
                if self._stopping or (not worker.cancel_pending and task is not None and task.cancelling()):
                    raise  # stop(), or someone cancelled the worker itself
                # A trace cancellation, or a CancelledError raised by the node's own code.
                await self._trace_cancelled_event(node, context, trace_id)
            finally:
                worker.trace_id = None
                if worker.cancel_pending:
                    worker.cancel_pending = False
                    task = worker.task
                    if task is not None and task.cancelling() and not self._stopping:
                        task.uncancel()
                if worker.unwound is not None:
                    if not worker.unwound.done():
                        worker.unwound.set_result(None)
                    worker.unwound = None
                await self._finalize_message(message)

    async def _trace_cancelled_event(self, node: Node, context: Context, trace_id: Any) -> None:
        if self._observed(logging.INFO):
            await self._emit_event(
                event="node_trace_cancelled",
                node=node,
                context=context,
                trace_id=trace_id,
                attempt=0,
                latency_ms=None,
                level=logging.INFO,
            )

    async def _skip_expired(self, node: Node, context: Context, message: Message, trace_id: Any) -> None:
        if self._observed(logging.INFO):
            await self._emit_event(
                event="deadline_skip",
                node=node,
                context=context,
                trace_id=trace_id,
                attempt=0,
                latency_ms=None,
                level=logging.INFO,
                extra={"deadline_s": message.deadline_s},
            )
        payload = message.payload
        if not isinstance(payload, FinalAnswer):
            payload = FinalAnswer(text=DEADLINE_EXCEEDED_TEXT)
        await self._emit_to_rookery(message.model_copy(update={"payload": payload}), source=node)
        await self._finalize_message(message)

    async def _execute(self, spec: _Spec, node: Node, context: Context, message: Any, trace_id: Any) -> None:
        """Run ``message`` through ``node`` with the node's policy: validation, timeout, retries."""
        func = spec.func
        adapter_in = spec.adapter_in
        adapter_out = spec.adapter_out
        timeout_s = spec.timeout_s
        attempt = 0
        while True:
            if self._observed(logging.DEBUG):
                await self._emit_event(
                    event="node_start",
                    node=node,
                    context=context,
                    trace_id=trace_id,
                    attempt=attempt,
                    latency_ms=0.0,
                    level=logging.DEBUG,
                )
            start = _clock.monotonic()
            try:
                payload = message if adapter_in is None else adapter_in.validate_python(message)
                if timeout_s is None:
                    result = await func(payload, context)
                    if result is not None and adapter_out is not None:
                        result = adapter_out.validate_python(result)
                else:
                    async with asyncio.timeout(timeout_s):
                        result = await func(payload, context)
                        if result is not None and adapter_out is not None:
                            result = adapter_out.validate_python(result)
                if result is not None:
                    if spec.expects_message and not isinstance(result, Message):
                        warnings.warn(
                            f"Node '{node.name}' is registered for Message -> Message outputs but returned "
                            f"{type(result).__name__}. Return a podium.flow.types.Message to preserve "
                            "headers, trace_id, and meta.",
                            RuntimeWarning,
                            stacklevel=2,
                        )
                    await self._route_result(node, context, message, result)
                if self._observed(logging.INFO):
                    await self._emit_event(
                        event="node_success",
                        node=node,
                        context=context,
                        trace_id=trace_id,
                        attempt=attempt,
                        latency_ms=(_clock.monotonic() - start) * 1000,
                        level=logging.INFO,
                    )
                return
            except (TraceCancelled, asyncio.CancelledError):
                raise
            except Exception as exc:
                latency = (_clock.monotonic() - start) * 1000
                timed_out = isinstance(exc, TimeoutError)
                exc_info: ExcInfo = (type(exc), exc, exc.__traceback__)
                level = logging.WARNING if timed_out else logging.ERROR
                if self._observed(level):
                    await self._emit_event(
                        event="node_timeout" if timed_out else "node_error",
                        node=node,
                        context=context,
                        trace_id=trace_id,
                        attempt=attempt,
                        latency_ms=latency,
                        level=level,
                        extra={"exception": repr(exc)},
                        exc_info=exc_info,
                    )
                if attempt >= spec.policy.max_retries:
                    await self._fail(node, context, trace_id, exc, attempt, latency, timed_out, exc_info)
                    return
                attempt += 1
                delay = spec.policy.backoff_delay(attempt)
                if self._observed(logging.INFO):
                    await self._emit_event(
                        event="node_retry",
                        node=node,
                        context=context,
                        trace_id=trace_id,
                        attempt=attempt,
                        latency_ms=None,
                        level=logging.INFO,
                        extra={"sleep_s": delay, "exception": repr(exc)},
                    )
                await _clock.sleep(delay)

    async def _route_result(self, node: Node, context: Context, incoming: Any, result: Any) -> None:
        if isinstance(result, Message):
            payload = result.payload
            if isinstance(payload, WM | FinalAnswer):
                destination, prepared, targets, deliver_rookery = self._controller_postprocess(
                    node, context, incoming, result
                )
                if deliver_rookery:
                    copy = prepared.model_copy(deep=True) if isinstance(prepared, Message) else prepared
                    await self._emit_to_rookery(copy, source=node)
                if destination == "rookery":
                    await self._emit_to_rookery(prepared, source=node)
                else:
                    await context.emit(prepared, to=targets)
                return
        # The common case, inlined: every successor, counting the message per trace.
        trace_id = _trace_of(result)
        counts = self._trace_counts
        bus = self._message_bus
        for floe in context._out_floes:
            if trace_id is not None:
                counts[trace_id] = counts.get(trace_id, 0) + 1
            if bus is not None:
                await self._publish_to_bus(floe.source, floe.target, result)
            queue = floe.queue
            if 0 < queue.maxsize <= queue._count:
                await queue.put(result)
            else:
                queue.put_nowait(result)

    def _controller_postprocess(
        self, node: Node, context: Context, incoming: Any, result: Any
    ) -> tuple[str, Any, list[Node] | None, bool]:
        """Decide where a controller's result goes: back to the node, or to Rookery as a final answer."""
        if isinstance(result, Message):
            payload = result.payload
            if isinstance(payload, WM):
                if result.deadline_s is not None and _clock.wall_time() > result.deadline_s:
                    return "rookery", self._final(result, DEADLINE_EXCEEDED_TEXT), None, False
                if payload.budget_tokens is not None and payload.tokens_used >= payload.budget_tokens:
                    return "rookery", self._final(result, TOKEN_BUDGET_EXCEEDED_TEXT), None, False
                incoming_hops: int | None = None
                if isinstance(incoming, Message) and isinstance(incoming.payload, WM):
                    incoming_hops = incoming.payload.hops
                current_hops = payload.hops
                if incoming_hops is not None and current_hops <= incoming_hops:
                    next_hops = incoming_hops + 1
                else:
                    next_hops = current_hops
                if payload.budget_hops is not None and next_hops >= payload.budget_hops:
                    return "rookery", self._final(result, BUDGET_EXCEEDED_TEXT), None, False
                prepared = result
                if next_hops != current_hops:
                    updated = payload.model_copy(update={"hops": next_hops})
                    prepared = result.model_copy(update={"payload": updated})
                stream_updates = payload.budget_hops is None and payload.budget_tokens is None
                return "context", prepared, [node], stream_updates
            if isinstance(payload, FinalAnswer):
                return "rookery", result, None, False
        return "context", result, None, False

    @staticmethod
    def _final(result: Message, text: str) -> Message:
        return result.model_copy(update={"payload": FinalAnswer(text=text)})

    async def _fail(
        self,
        node: Node,
        context: Context,
        trace_id: Any,
        exc: Exception,
        attempt: int,
        latency: float,
        timed_out: bool,
        exc_info: ExcInfo,
    ) -> None:
        metadata: dict[str, Any] = {"attempt": attempt, "latency_ms": latency}
        if timed_out:
            code = FlowErrorCode.NODE_TIMEOUT
            timeout_s = node.policy.timeout_s
            message = None if timeout_s is None else f"Node '{node.name}' timed out after {timeout_s:.2f}s"
            metadata["timeout_s"] = timeout_s
        else:
            code = FlowErrorCode.NODE_EXCEPTION
            message = f"Node '{node.name}' raised {type(exc).__name__}: {exc}"
            metadata["exception_repr"] = repr(exc)
        flow_error = FlowError.from_exception(
            trace_id=trace_id,
            node_name=node.name,
            node_id=node.node_id,
            exc=exc,
            code=code,
            message=message,
            metadata=metadata,
        )
        if self._observed(logging.ERROR):
            await self._emit_event(
                event="node_failed",
                node=node,
                context=context,
                trace_id=trace_id,
                attempt=attempt,
                latency_ms=latency,
                level=logging.ERROR,
                extra={"exception": repr(exc), "flow_error": flow_error.to_payload()},
                exc_info=exc_info,
            )
        if self._emit_errors_to_rookery and trace_id is not None:
            await self._emit_to_rookery(flow_error, source=node)

    # -- events --------------------------------------------------------------------------------------------

    def _trace_inflight(self, trace_id: Any) -> int:
        running = sum(1 for worker in self._workers if worker.trace_id == trace_id)
        return running + len(self._external_tasks.get(trace_id, ()))

    async def _emit_event(
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
            trace_pending = self._trace_counts.get(trace_id, 0)
            trace_inflight = self._trace_inflight(trace_id)
            trace_cancelled = self._is_trace_cancelled(trace_id)
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
            queue_maxsize=self._queue_maxsize,
            trace_pending=trace_pending,
            trace_inflight=trace_inflight,
            trace_cancelled=trace_cancelled,
            extra=extra or {},
        )
        if _log_enabled(level):
            logger.log(level, event, extra=event_obj.to_payload(), exc_info=exc_info)
        if self._state_store is not None:
            stored = StoredEvent.from_flow_event(event_obj)
            try:
                await self._state_store.save_event(stored)
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
        for middleware in list(self._middlewares):
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


PenguiFlow = Flow
"""The PenguiFlow name of :class:`Flow`, for code moving over by changing imports."""

PlaybookFactory = Callable[[], tuple[Flow, ModelRegistry | None]]


async def call_playbook(
    playbook: PlaybookFactory,
    parent_msg: Message,
    timeout: float | None = None,  # noqa: ASYNC109 - PenguiFlow's signature
    *,
    runtime: Flow | None = None,
) -> Any:
    """Run a subflow built by ``playbook()`` for ``parent_msg`` and return its first Rookery payload.

    The subflow reuses the parent's trace id and headers, honours ``timeout`` (seconds), is cancelled
    with the parent trace (``runtime.cancel(trace_id)`` raises :class:`TraceCancelled` here), and is
    always stopped before this returns or raises.
    """
    flow, registry = playbook()
    flow.run(registry=registry)
    trace_id = getattr(parent_msg, "trace_id", None)
    unregister: Callable[[], None] | None = None
    cancelled_by_parent = False
    caller = asyncio.current_task()
    try:
        if runtime is not None and trace_id is not None:
            if runtime._is_trace_cancelled(trace_id):
                raise TraceCancelled(trace_id)
            if runtime._worker_for_current_task() is None and caller is not None:
                # Not inside one of the runtime's workers (those are cancelled by the runtime itself):
                # interrupt the caller when the parent trace is cancelled.
                def _interrupt() -> None:
                    nonlocal cancelled_by_parent
                    cancelled_by_parent = True
                    caller.cancel()

                unregister = runtime._on_trace_cancel(trace_id, _interrupt)
        try:
            await flow.emit(parent_msg)
            if timeout is None:
                result = await flow.fetch()
            else:
                async with asyncio.timeout(timeout):
                    result = await flow.fetch()
        except asyncio.CancelledError:
            if trace_id is not None:
                with suppress(Exception):
                    await flow.cancel(trace_id)
            if cancelled_by_parent and caller is not None and caller.uncancel() == 0:
                raise TraceCancelled(trace_id) from None
            raise
        return result.payload if isinstance(result, Message) else result
    finally:
        if unregister is not None:
            unregister()
        await asyncio.shield(flow.stop())


def create(*adjacencies: tuple[Node, Sequence[Node]], **kwargs: Any) -> Flow:
    """Build a :class:`Flow` from ``node.to(...)`` pairs; keyword options as for :class:`Flow`."""
    return Flow(*adjacencies, **kwargs)
