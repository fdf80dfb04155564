"""Virtual time for tests: settle the event loop at the current instant, or run an awaitable skipping time.

Owns the two ways a test moves a :class:`~podium.clock.ManualClock` besides ``advance``: :func:`settle` (fire
what is due now and let it run) and :func:`drive` (Temporal-style time skipping: whenever the work waits on the
clock only, jump to the next deadline). Must not know about engines or workcells: it speaks to the clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from podium.clock import ManualClock

__all__ = ["drive", "settle"]

T = TypeVar("T")

_PASSES = 30
"""Loop passes given to runnable work before time is considered again (a commit is a handful of awaits)."""


async def settle(clock: ManualClock, *, max_rounds: int = 1000) -> None:
    """Let runnable work run at the current virtual time, firing sleepers that fall due now, until quiet.

    Quiet means: after a burst of event-loop passes no sleeper is due at the clock's current time. Time itself
    does not move.
    """
    for _ in range(max_rounds):
        for _ in range(_PASSES):
            await asyncio.sleep(0)
        deadline = clock.next_deadline
        if deadline is None or deadline > clock.now():
            return
        await clock.set(clock.now())  # wakes every sleeper due at this instant (timeouts of 0 s too)


async def drive(clock: ManualClock, aw: Awaitable[T], *, max_steps: int = 20_000) -> T:
    """Run ``aw`` to completion, moving the manual clock to each pending deadline (time skipping).

    With no deadline pending, the work is in flight (the event loop, or a thread reading a file): it gets a
    moment of real time instead of the clock moving. Raises :class:`TimeoutError` after ``max_steps`` moves.
    """
    task = asyncio.ensure_future(aw)
    try:
        for _ in range(max_steps):
            if task.done():
                return task.result()
            for _ in range(_PASSES):  # let runnable work settle before time moves
                await asyncio.sleep(0)
            if task.done():
                continue
            deadline = clock.next_deadline
            if deadline is not None:
                await clock.set(max(deadline, clock.now()))
            else:
                await asyncio.wait({task}, timeout=0.0005)  # real time for work in a thread
        raise TimeoutError(f"did not finish: the clock made {max_steps} moves (now {clock.monotonic()} s in)")
    finally:
        if not task.done():
            task.cancel()
