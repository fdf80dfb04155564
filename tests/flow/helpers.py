"""Helpers shared by the flow tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from podium.flow import FlowEvent, Headers, Message

HEADERS = Headers(tenant="acme")


def msg(payload: Any, **kwargs: Any) -> Message:
    return Message(payload=payload, headers=HEADERS, **kwargs)


class EventLog:
    """A middleware that keeps every event and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[FlowEvent] = []
        self._changed = asyncio.Event()

    async def __call__(self, event: FlowEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def kinds(self, trace_id: str | None = None) -> list[str]:
        return [e.event_type for e in self.events if trace_id is None or e.trace_id == trace_id]

    async def wait_for(self, predicate: Callable[[FlowEvent], bool], timeout_s: float = 2.0) -> FlowEvent:
        async with asyncio.timeout(timeout_s):
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                self._changed.clear()
                await self._changed.wait()


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 2.0) -> None:
    """Yield to the loop until ``predicate()`` holds (fails the test after ``timeout_s``)."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0)


async def gather_fetch(flow: Any, count: int, timeout_s: float = 2.0) -> list[Any]:
    async with asyncio.timeout(timeout_s):
        return [await flow.fetch() for _ in range(count)]


Identity = Callable[[Any, Any], Awaitable[Any]]


async def identity(message: Any, _ctx: Any) -> Any:
    return message
