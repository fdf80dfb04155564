"""Waiting on an :class:`~podium.engine.OrchestratorEngine` in tests: by its events, bounded in real time.

Owns :class:`EventLog` (every event from its creation on), :func:`wait_event` / :func:`watch` (the next
matching event) and :func:`join` (a job's terminal view). Every wait is on the engine's own events or its
``wait_for_job`` with a real-time timeout: nothing here sleeps or polls, and nothing moves a clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from podium.engine import EngineEvent, JobView, OrchestratorEngine

__all__ = ["DEFAULT_TIMEOUT_S", "EventLog", "join", "wait_event", "watch"]

DEFAULT_TIMEOUT_S = 10.0
"""Real seconds a wait gives up after (generous: a loaded CI machine is slow, a hung test is slower)."""

EventPredicate = Callable[[EngineEvent], bool]


class EventLog:
    """Records every engine event from its creation on; :meth:`wait` returns the first (past or future) match."""

    def __init__(self, engine: OrchestratorEngine) -> None:
        self.events: list[EngineEvent] = []
        """Every event seen, in order."""
        self._waiters: list[tuple[EventPredicate, asyncio.Future[EngineEvent]]] = []
        self._unsubscribe = engine.subscribe(self._on)

    def _on(self, ev: EngineEvent) -> None:
        self.events.append(ev)
        for pred, fut in list(self._waiters):
            if not fut.done() and pred(ev):
                fut.set_result(ev)

    def of_type(self, *types: str) -> list[EngineEvent]:
        """The events seen so far whose type is one of ``types``."""
        return [ev for ev in self.events if ev.type in types]

    async def wait(self, pred: EventPredicate, timeout_s: float = DEFAULT_TIMEOUT_S) -> EngineEvent:
        """The first event (already seen, or the next one) matching ``pred``; :class:`TimeoutError` after
        ``timeout_s`` real seconds."""
        for ev in self.events:
            if pred(ev):
                return ev
        fut: asyncio.Future[EngineEvent] = asyncio.get_running_loop().create_future()
        entry = (pred, fut)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            raise TimeoutError(f"no matching engine event within {timeout_s} s (real time)") from None
        finally:
            self._waiters.remove(entry)

    def close(self) -> None:
        """Stop recording (idempotent)."""
        self._unsubscribe()


def watch(engine: OrchestratorEngine, pred: EventPredicate) -> asyncio.Future[EngineEvent]:
    """Start watching now; await the future later (so an event that happens in between is not missed)."""
    fut: asyncio.Future[EngineEvent] = asyncio.get_running_loop().create_future()
    unsubscribe: Callable[[], None]

    def listener(ev: EngineEvent) -> None:
        if not fut.done() and pred(ev):
            fut.set_result(ev)
            unsubscribe()

    unsubscribe = engine.subscribe(listener)
    fut.add_done_callback(lambda _: unsubscribe())  # a cancelled watch stops listening too
    return fut


async def wait_event(
    engine: OrchestratorEngine, pred: EventPredicate, timeout_s: float = DEFAULT_TIMEOUT_S
) -> EngineEvent:
    """Wait (real time bound) for the next engine event matching ``pred``."""
    fut = watch(engine, pred)
    try:
        return await asyncio.wait_for(fut, timeout_s)
    except TimeoutError:
        raise TimeoutError(f"no matching engine event within {timeout_s} s (real time)") from None


async def join(engine: OrchestratorEngine, job_id: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> JobView:
    """The job's view once it is terminal; :class:`TimeoutError` naming its status after ``timeout_s`` real
    seconds (the engine's clock is not moved: on a manual clock, advance it or use :func:`~podium.testing.drive`)."""
    try:
        return await asyncio.wait_for(engine.wait_for_job(job_id), timeout_s)
    except TimeoutError:
        status = (await engine.get_job(job_id)).status
        raise TimeoutError(
            f"job {job_id} did not end within {timeout_s} s (real time): it is {status}"
        ) from None
