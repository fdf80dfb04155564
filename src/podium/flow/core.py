"""The flow runtime: the :class:`Flow` that runs a graph of nodes, as a facade over its parts.

Design (what makes a hop cheap):

- one worker task per node; a node's function runs inside that task (no task per message);
- each consumer has one inbox (a deque of ``(edge, message)`` in arrival order); each edge keeps its own
  count for backpressure, so a full edge makes ``emit`` wait and nothing is ever dropped;
- per-trace bookkeeping lives in plain dicts; events are built only when someone listens (middlewares,
  a state store, or a logger enabled for the event's level);
- ``cancel(trace_id)`` drops the trace's queued messages and cancels the workers that are running it,
  which absorb that cancellation and carry on with the next message.

Ingress and egress are the implicit endpoints ``OpenSea`` and ``Rookery``. The parts, each with what it
receives in its constructor:

- ``_edges``: endpoints, inboxes and the bounded edge queues (:class:`Floe`);
- ``context``: :class:`Context`, what a node sees (emit, fetch, streaming, playbooks);
- ``graph``: :class:`~podium.flow.graph.FlowGraph`, nodes, contexts and floes built from the adjacencies;
- ``runtime``: :class:`~podium.flow.runtime.TraceRuntime`, per-trace bookkeeping, cancellation, sending,
  FlowEvents, the state store and message bus hooks;
- ``workers``: :class:`~podium.flow.workers.NodeWorkers`, one task per node, policies, controller loops;
- ``playbooks``: :func:`call_playbook`, subflows on the parent's trace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ._edges import OPEN_SEA as OPEN_SEA
from ._edges import ROOKERY as ROOKERY
from ._edges import Endpoint as Endpoint
from ._edges import Floe as Floe
from ._edges import Target as Target
from ._edges import _EdgeQueue as _EdgeQueue
from ._edges import _Inbox as _Inbox
from .bus import MessageBus
from .context import Context
from .errors import CycleError, TraceCancelled
from .graph import FlowGraph
from .middlewares import Middleware
from .node import Node
from .playbooks import PlaybookFactory as PlaybookFactory
from .playbooks import call_playbook
from .registry import ModelRegistry as ModelRegistry
from .runtime import ExcInfo as ExcInfo
from .runtime import TraceListener, TraceRuntime
from .state import RemoteBinding, StateStore, StoredEvent
from .types import Message, StreamChunk
from .workers import BUDGET_EXCEEDED_TEXT as BUDGET_EXCEEDED_TEXT
from .workers import DEADLINE_EXCEEDED_TEXT as DEADLINE_EXCEEDED_TEXT
from .workers import TOKEN_BUDGET_EXCEEDED_TEXT as TOKEN_BUDGET_EXCEEDED_TEXT
from .workers import NodeWorkers

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

DEFAULT_QUEUE_MAXSIZE = 64


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
        self._middlewares: list[Middleware] = list(middlewares or [])
        self._state_store = state_store
        self._message_bus = message_bus
        self._traces = TraceRuntime(
            queue_maxsize=queue_maxsize,
            middlewares=self._middlewares,
            state_store=state_store,
            message_bus=message_bus,
        )
        self._graph = FlowGraph(
            adjacencies,
            queue_maxsize=queue_maxsize,
            allow_cycles=allow_cycles,
            make_context=lambda owner: Context(owner, self),
        )
        self._traces.attach(self._graph.contexts)
        self._node_workers = NodeWorkers(self._traces, emit_errors_to_rookery=emit_errors_to_rookery)
        self._running = False
        self._registry: Any | None = None
        # the parts' state under the names code written for PenguiFlow reads (same objects, never replaced)
        self._nodes = self._graph.nodes
        self._contexts = self._graph.contexts
        self._floes = self._graph.floes
        self._tasks = self._node_workers.tasks
        self._trace_counts = self._traces.trace_counts
        self._trace_events = self._traces.trace_events
        self._cancelled = self._traces.cancelled
        self._open_sea = self._traces.open_sea
        self._rookery = self._traces.rookery

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

    # -- lifecycle -----------------------------------------------------------------------------------------

    def run(self, *, registry: Any | None = None) -> None:
        """Start one worker task per node; with a registry, every validating node must be registered."""
        if self._running:
            raise RuntimeError("flow is already running")
        if registry is not None:
            self._ensure_registry_covers_nodes(registry)
        self._registry = registry
        self._node_workers.start({node: self._contexts[node] for node in self._nodes}, registry)
        self._running = True

    async def stop(self) -> None:
        """Cancel the workers and wait for them; idempotent."""
        if not self._running:
            return
        self._node_workers.stopping = True
        try:
            await self._node_workers.stop()
            await self._traces.shutdown()
        finally:
            self._node_workers.stopping = False
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

    async def emit(self, msg: Any, to: Node | Sequence[Node] | None = None) -> None:
        """Put ``msg`` into OpenSea (all ingress nodes, or ``to``); waits while an ingress edge is full."""
        if self._traces.is_repeated_wm(msg):
            return
        await self._open_sea.emit(msg, to)

    def emit_nowait(self, msg: Any, to: Node | Sequence[Node] | None = None) -> None:
        """Like :meth:`emit` but raises ``asyncio.QueueFull`` instead of waiting."""
        if self._traces.is_repeated_wm(msg):
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
        await self._traces.finalize_message(result)
        return result

    async def fetch_any(self, from_: Node | Sequence[Node] | None = None) -> Any:
        return await self.fetch(from_)

    # -- cancellation --------------------------------------------------------------------------------------

    def ensure_trace_event(self, trace_id: str) -> asyncio.Event:
        """Return (creating it if needed) an event that is set when ``trace_id`` is cancelled."""
        return self._traces.ensure_trace_event(trace_id)

    def register_external_task(self, trace_id: str, task: asyncio.Future[Any]) -> None:
        """Track a task working for ``trace_id`` so that ``stop()`` cancels it."""
        self._traces.register_external_task(trace_id, task)

    async def cancel(self, trace_id: str) -> bool:
        """Stop all work of ``trace_id``: queued messages are dropped, running nodes are cancelled.

        Returns ``False`` when the trace has nothing pending. When it returns ``True`` (and is not called
        from a node of that trace), every node that was running the trace has finished unwinding,
        playbook subflows included. Other traces keep running.
        """
        if not self._running:
            raise RuntimeError("flow is not running")
        return await self._traces.cancel(trace_id)

    def _is_trace_cancelled(self, trace_id: Any) -> bool:
        return self._traces.is_trace_cancelled(trace_id)

    def _add_trace_listener(self, listener: TraceListener) -> None:
        self._traces.add_trace_listener(listener)

    async def _emit_to_rookery(self, message: Any, *, source: Node | Endpoint | None = None) -> None:
        """Deliver ``message`` to Rookery whatever the graph's edges are."""
        await self._traces.emit_to_rookery(message, source=source)

    # -- history and remote hooks --------------------------------------------------------------------------

    async def load_history(self, trace_id: str) -> Sequence[StoredEvent]:
        """Return the persisted history of ``trace_id`` from the state store."""
        return await self._traces.load_history(trace_id)

    async def save_remote_binding(self, binding: RemoteBinding) -> None:
        """Persist a remote binding if a state store is configured (failures are logged)."""
        await self._traces.save_remote_binding(binding)

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
        await self._traces.record_remote_event(
            event=event,
            node=node,
            context=context,
            trace_id=trace_id,
            latency_ms=latency_ms,
            level=level,
            extra=extra,
        )


PenguiFlow = Flow
"""The PenguiFlow name of :class:`Flow`, for code moving over by changing imports."""


def create(*adjacencies: tuple[Node, Sequence[Node]], **kwargs: Any) -> Flow:
    """Build a :class:`Flow` from ``node.to(...)`` pairs; keyword options as for :class:`Flow`."""
    return Flow(*adjacencies, **kwargs)
