"""One clock for every timer, timeout, lease and backoff.

Engine, scheduler, store and simulated-instrument logic never call ``time.time()``, ``asyncio.sleep()``
or ``datetime.now()`` directly: they take a :class:`Clock`. :class:`SystemClock` is the real one;
:class:`ManualClock` is a virtual clock that only moves when told to (tests, and later whole-lab
simulation), so the same production code runs a day of lab time in milliseconds, deterministically.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = ["Clock", "ManualClock", "SystemClock", "system_clock"]

T = TypeVar("T")


@runtime_checkable
class Clock(Protocol):
    """The time source. ``now()`` is seconds since the Unix epoch (virtual for a manual clock)."""

    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences are meaningful."""
        ...

    async def sleep(self, delay_s: float) -> None:
        """Wait ``delay_s`` seconds of this clock's time."""
        ...

    async def wait_for(self, aw: Awaitable[T], timeout_s: float | None) -> T:
        """Await ``aw``; raise :class:`TimeoutError` after ``timeout_s`` of this clock's time."""
        ...


class _ClockBase:
    def now(self) -> float:  # pragma: no cover - overridden
        raise NotImplementedError

    def datetime(self) -> datetime:
        """The current time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.now(), UTC)


class SystemClock(_ClockBase):
    """The real clock: wall time, the event loop's timers."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, delay_s: float) -> None:
        await asyncio.sleep(max(0.0, delay_s))

    async def wait_for(self, aw: Awaitable[T], timeout_s: float | None) -> T:
        return await asyncio.wait_for(aw, timeout_s)


system_clock = SystemClock()
"""The process-wide real clock; the default wherever a clock is optional."""


class ManualClock(_ClockBase):
    """A virtual clock that moves only through :meth:`advance` / :meth:`set`.

    Sleepers wake in deadline order when time passes their deadline, each woken sleeper getting a
    chance to run (and to schedule new sleepers) before later ones are considered.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._offset = self._now
        self._seq = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now - self._offset

    def _timer(self, delay_s: float) -> asyncio.Future[None]:
        """A future that resolves when the clock reaches now + ``delay_s`` (registered at once)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + delay_s, next(self._seq), fut))
        return fut

    async def sleep(self, delay_s: float) -> None:
        if delay_s <= 0:
            await asyncio.sleep(0)
            return
        await self._timer(delay_s)

    async def wait_for(self, aw: Awaitable[T], timeout_s: float | None) -> T:
        if timeout_s is None:
            return await aw
        task: asyncio.Future[T] = asyncio.ensure_future(aw)
        timer = self._timer(max(0.0, timeout_s))
        try:
            waiting: set[asyncio.Future[Any]] = {task, timer}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
            task.cancel()
            raise TimeoutError(f"timed out after {timeout_s} s (virtual)")
        finally:
            timer.cancel()
            if not task.done():
                task.cancel()

    @property
    def next_deadline(self) -> float | None:
        """The earliest pending sleeper's deadline, if any."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    async def advance(self, delta_s: float) -> None:
        """Move time forward by ``delta_s`` seconds, waking every sleeper due on the way."""
        await self.set(self._now + delta_s)

    async def set(self, when: float) -> None:
        """Move time forward to ``when``, waking sleepers due on the way, in order."""
        if when < self._now:
            raise ValueError("a clock does not go back")
        while True:
            deadline = self.next_deadline
            if deadline is None or deadline > when:
                break
            _, _, fut = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            fut.set_result(None)
            # Let the woken task (and what it schedules) run before the next deadline.
            for _ in range(3):
                await asyncio.sleep(0)
        self._now = when
        for _ in range(3):
            await asyncio.sleep(0)
