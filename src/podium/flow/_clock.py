"""The one place where :mod:`podium.flow` reads time.

Everything in the runtime that needs a clock goes through the module attributes below, so a test (or a
future virtual clock) can swap them with :func:`set_clock` without touching the runtime code:

- ``wall_time()``: seconds since the epoch; ``Message.ts``, ``Message.deadline_s``, ``FlowEvent.ts``;
- ``monotonic()``: a monotonic float for latencies (``latency_ms``);
- ``sleep(delay_s)``: the retry backoff wait.

Timeouts use the running event loop's own timer (``asyncio.timeout``), so they follow the loop's clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["monotonic", "reset_clock", "set_clock", "sleep", "wall_time"]

wall_time: Callable[[], float] = time.time
monotonic: Callable[[], float] = time.perf_counter
sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


def set_clock(
    *,
    wall: Callable[[], float] | None = None,
    mono: Callable[[], float] | None = None,
    sleeper: Callable[[float], Awaitable[None]] | None = None,
) -> None:
    """Replace any of the time sources used by the runtime."""
    global wall_time, monotonic, sleep
    if wall is not None:
        wall_time = wall
    if mono is not None:
        monotonic = mono
    if sleeper is not None:
        sleep = sleeper


def reset_clock() -> None:
    """Restore the real clock."""
    set_clock(wall=time.time, mono=time.perf_counter, sleeper=asyncio.sleep)
