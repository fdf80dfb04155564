"""The edges of a flow: endpoints, per-consumer inboxes and the bounded edge queues (floes) over them.

Each consumer has one inbox (a deque of ``(edge, message)`` in arrival order); each edge keeps its own count
for backpressure, so a full edge makes ``put`` wait and nothing is ever dropped.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from .node import Node
from .types import Message

__all__ = ["OPEN_SEA", "ROOKERY", "Endpoint", "Floe", "Target", "fetch_from_edges", "trace_of"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A synthetic endpoint of every flow (``OpenSea`` for ingress, ``Rookery`` for egress)."""

    name: str


OPEN_SEA = Endpoint("OpenSea")
ROOKERY = Endpoint("Rookery")


def trace_of(message: Any) -> Any:
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

    async def wait_for_space(self) -> None:
        """Wait until a ``put_nowait`` would not raise ``QueueFull`` (nothing is reserved)."""
        while 0 < self.maxsize <= self._count:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._putters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                with suppress(ValueError):
                    self._putters.remove(waiter)
                if not self.full() and not waiter.cancelled():
                    _wake_one(self._putters)
                raise

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
        return await fetch_from_edges((self,))


async def fetch_from_edges(edges: Sequence[_EdgeQueue]) -> Any:
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
