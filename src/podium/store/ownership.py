"""Fenced ownership: one holder at a time runs a piece of background work, over a store lock.

Several instances on one store (an engine's recovery, a workcell's scheduler) elect an owner with a lock that
has a TTL and a fencing token (:meth:`Store.acquire_lock`). :class:`FencedOwnership` is the one loop that keeps
such a lock: every third of the TTL it refreshes the lock it holds, or tries to take a free one; it calls
``on_acquired(token)`` when it becomes the owner, ``on_lost()`` when a refresh fails (another holder has the
lock, or it expired), and ``on_held()`` on every tick it is the owner. Time comes from the injected clock, so
tests drive the loop with :class:`podium.clock.ManualClock`.

```python
ownership = FencedOwnership(store, "engine:recovery", instance_id, ttl_s=30, clock=clock,
                            on_acquired=recover, on_lost=forget)
await ownership.acquire()   # try once at start-up, without calling on_acquired
ownership.start()           # the refresh loop
...
await ownership.stop()      # stop the loop and release the lock if held
```
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from podium.clock import Clock, system_clock
from podium.store.base import Store

__all__ = ["FencedOwnership"]

log = logging.getLogger("podium.store.ownership")


class FencedOwnership:
    """Keep (or wait to take) the store lock ``name`` for ``holder``; see the module docstring."""

    def __init__(
        self,
        store: Store,
        name: str,
        holder: str,
        *,
        ttl_s: float,
        clock: Clock | None = None,
        on_acquired: Callable[[int], Awaitable[None]] | None = None,
        on_lost: Callable[[], Awaitable[None]] | None = None,
        on_held: Callable[[], Awaitable[None]] | None = None,
        label: str | None = None,
    ) -> None:
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s!r}")
        self.store = store
        self.name = name
        self.holder = holder
        self.ttl_s = ttl_s
        self.clock: Clock = clock or system_clock
        self.label = label or name
        self._on_acquired = on_acquired
        self._on_lost = on_lost
        self._on_held = on_held
        self._token: int | None = None
        self._guard = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def token(self) -> int | None:
        """The fencing token of the lock held, ``None`` while not the owner."""
        return self._token

    @property
    def is_owner(self) -> bool:
        return self._token is not None

    @property
    def refresh_interval_s(self) -> float:
        return self.ttl_s / 3

    async def acquire(self) -> bool:
        """Try once to take the lock (or keep it), without calling ``on_acquired``: for start-up, where the
        caller loads its state itself. Returns whether this holder owns the lock now."""
        async with self._guard:
            if self._token is not None:
                return True
            self._token = await self.store.acquire_lock(self.name, self.holder, ttl_s=self.ttl_s)
            return self._token is not None

    async def check(self) -> bool:
        """Refresh the lock if held (on failure: forget it and call ``on_lost``); take it if free (then call
        ``on_acquired``). Returns whether this holder owns the lock now. Callbacks run under the same guard,
        so a take-over and a step-down never overlap."""
        async with self._guard:
            if self._token is not None:
                if await self.store.refresh_lock(self.name, self.holder, self._token, ttl_s=self.ttl_s):
                    return True
                self._token = None
                log.warning(
                    "%s: lost the lock %r; standing by",
                    self.label,
                    self.name,
                    extra={"instance": self.holder},
                )
                if self._on_lost is not None:
                    await self._on_lost()
                return False
            token = await self.store.acquire_lock(self.name, self.holder, ttl_s=self.ttl_s)
            if token is None:
                return False
            self._token = token
            log.info(
                "%s: took the lock %r (token %s)",
                self.label,
                self.name,
                token,
                extra={"instance": self.holder},
            )
            if self._on_acquired is not None:
                await self._on_acquired(token)
            return True

    async def tick(self) -> bool:
        """One round of the loop: :meth:`check`, then ``on_held`` if this holder owns the lock."""
        owner = await self.check()
        if owner and self._on_held is not None:
            await self._on_held()
        return owner

    async def run(self) -> None:
        """Tick every third of the TTL until cancelled; a failing round is logged and the loop goes on."""
        while True:
            await self.clock.sleep(self.refresh_interval_s)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: ownership round failed", self.label, extra={"instance": self.holder})

    def start(self) -> None:
        """Run :meth:`run` as a task of the current loop (once)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name=f"podium-owner:{self.name}")

    async def stop(self, *, release: bool = True) -> None:
        """Stop the loop; with ``release``, give the lock back so that another holder can take it at once."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if release:
            await self.release()

    async def release(self) -> None:
        """Give the lock back if held (errors are swallowed: an unreachable store lets the TTL do it)."""
        token, self._token = self._token, None
        if token is not None:
            with contextlib.suppress(Exception):
                await self.store.release_lock(self.name, self.holder, token)
