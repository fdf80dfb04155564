"""What a node sees of its flow: :class:`Context` (``emit``, ``fetch``, ``emit_chunk``, ``call_playbook``)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from ._edges import Endpoint, Floe, Target, _Inbox, fetch_from_edges
from .node import Node
from .playbooks import PlaybookFactory, call_playbook
from .types import Message, StreamChunk

if TYPE_CHECKING:
    from .core import Flow
    from .runtime import TraceRuntime

__all__ = ["Context"]


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
        "_traces",
    )

    def __init__(self, owner: Node | Endpoint, runtime: Flow | None = None) -> None:
        self._owner = owner
        self._incoming: dict[Node | Endpoint, Floe] = {}
        self._outgoing: dict[Node | Endpoint, Floe] = {}
        self._out_floes: tuple[Floe, ...] = ()
        self._buffer: deque[Any] = deque()
        self._runtime = runtime
        self._traces: TraceRuntime | None = None if runtime is None else runtime._traces
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

    def _require_runtime(self) -> TraceRuntime:
        if self._traces is None:
            raise RuntimeError("Context is not attached to a running flow")
        return self._traces

    async def emit(self, msg: Any, to: Target = None) -> None:
        """Send ``msg`` to every successor (or only to ``to``); waits while a target edge is full."""
        runtime = self._require_runtime()
        floes = self._out_floes if to is None else self._resolve_targets(to, self._outgoing)
        for floe in floes:
            await runtime.send_to_floe(floe, msg)

    def emit_nowait(self, msg: Any, to: Target = None) -> None:
        """Like :meth:`emit` but raises ``asyncio.QueueFull`` instead of waiting."""
        runtime = self._require_runtime()
        floes = self._out_floes if to is None else self._resolve_targets(to, self._outgoing)
        for floe in floes:
            runtime.send_to_floe_nowait(floe, msg)

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

        Sequence numbers count from 0 per ``stream_id`` (default: the parent's trace id) across the whole
        flow, whoever emits into the stream, unless ``seq`` is given (the count then goes on from it);
        ``done=True`` ends the stream and resets its counter. Returns the emitted chunk.
        """
        runtime = self._require_runtime()
        sid = stream_id or parent.trace_id
        counters = runtime.stream_seq
        if sid in counters:
            await runtime.await_trace_capacity(sid, offset=1)
        floes = self._out_floes if to is None else self._resolve_targets(to, self._outgoing)
        while (full := next((floe for floe in floes if floe.queue.full()), None)) is not None:
            await full.queue.wait_for_space()
        # From here on nothing awaits: the number is taken and the chunk queued at once, so every emitter
        # into the stream (nodes, OpenSea) gets the next number and none is lost to a cancelled send.
        next_seq = counters.get(sid, -1) + 1 if seq is None else seq
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
        for floe in floes:
            runtime.send_to_floe_nowait(floe, message)
        if done:
            counters.pop(sid, None)
        else:
            counters[sid] = next_seq
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
        return await fetch_from_edges([floe.queue for floe in floes])

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
