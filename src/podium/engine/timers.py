"""One timer structure for the engine: a heap of deadlines on the injected clock, woken by events.

Dispatch and result timeouts (and later schedules) are entries keyed by a string; scheduling the same key
again replaces the entry, cancelling drops it. One background task sleeps until the earliest deadline *on
the clock* (so advancing a :class:`~podium.clock.ManualClock` fires them) or until an earlier entry is
added; there is no polling interval. Callbacks run as tasks and their errors are logged, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from podium.clock import Clock

__all__ = ["TimerQueue"]

log = logging.getLogger("podium.engine.timers")

Callback = Callable[[str, Any], Awaitable[None]]


class TimerQueue:
    """Keyed deadlines on one clock; ``callback(key, payload)`` runs when a deadline passes."""

    def __init__(self, clock: Clock, callback: Callback) -> None:
        self.clock = clock
        self._callback = callback
        self._heap: list[tuple[float, int, str]] = []
        self._entries: dict[str, tuple[float, int, Any]] = {}
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def schedule(self, key: str, when: float, payload: Any = None) -> None:
        """Fire ``key`` at clock time ``when`` (replacing an earlier schedule of the same key)."""
        seq = next(self._seq)
        self._entries[key] = (when, seq, payload)
        heapq.heappush(self._heap, (when, seq, key))
        if self._heap[0][1] == seq:
            self._wake.set()

    def cancel(self, key: str) -> None:
        """Forget ``key`` (a no-op if it is not scheduled)."""
        self._entries.pop(key, None)

    def next_deadline(self) -> float | None:
        """The earliest live deadline."""
        while self._heap:
            when, seq, key = self._heap[0]
            entry = self._entries.get(key)
            if entry is not None and entry[1] == seq:
                return when
            heapq.heappop(self._heap)
        return None

    def start(self) -> None:
        """Start the background task (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="podium-engine-timers")

    async def stop(self) -> None:
        """Stop firing; wait for callbacks already running. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def _fire_due(self) -> None:
        now = self.clock.now()
        while True:
            when = self.next_deadline()
            if when is None or when > now:
                return
            _, _, key = heapq.heappop(self._heap)
            _, _, payload = self._entries.pop(key)
            task = asyncio.get_running_loop().create_task(self._call(key, payload))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _call(self, key: str, payload: Any) -> None:
        try:
            await self._callback(key, payload)
        except Exception:
            log.exception("timer callback failed", extra={"timer": key})

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            self._fire_due()
            when = self.next_deadline()
            if when is None:
                await self._wake.wait()
                continue
            with contextlib.suppress(TimeoutError):
                await self.clock.wait_for(self._wake.wait(), max(0.0, when - self.clock.now()))
