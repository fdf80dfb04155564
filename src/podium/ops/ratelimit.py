"""Rate limits per identity (a client, a worker) and operation class, counted in the store.

Avtomatika's limiter: fixed windows of ``period_s`` seconds; per window an identity may make ``limit``
requests of a class (heartbeats 120, polling 60, anything else 100 by default). Counting in the store makes
every instance on one store share one budget per identity and class.

Cost: one record per (identity, class) (kind :data:`RATELIMIT_KIND`, data ``{"w": window, "n": granted}``).
An instance does not write per request: it *reserves* a slice of the window's budget (a tenth of the limit,
at least one) with one compare-and-set write and grants from it locally, so a key costs at most ~10 store
writes per window, and a request that finds budget reserved costs no I/O at all. Across instances the sum of
what is granted never exceeds the limit (every grant comes from a reservation counted in the store); slices
reserved by one instance and not used by the end of the window are lost to the others, so several instances
may refuse a little before the limit, never after it. Concurrent requests for one key in one process share
one reservation write.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

from podium.clock import Clock, system_clock
from podium.errors import ConflictError, PodiumError, StoreError
from podium.store import Put, Store

__all__ = ["OP_CLASSES", "RATELIMIT_KIND", "RateLimited", "RateLimiter", "RateLimits"]

RATELIMIT_KIND = "ratelimit"
OP_CLASSES = ("heartbeat", "poll", "other")
_MAX_CONFLICTS = 64


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Requests allowed per ``period_s`` window, per operation class (Avtomatika's ``RATE_LIMIT_*``)."""

    limit: int = 100
    heartbeat_limit: int = 120
    poll_limit: int = 60
    period_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("limit", "heartbeat_limit", "poll_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if not self.period_s > 0:
            raise ValueError(f"period_s must be positive, got {self.period_s!r}")

    def of(self, op_class: str) -> int:
        """The limit of an operation class (``heartbeat``, ``poll``, anything else: ``limit``)."""
        if op_class == "heartbeat":
            return self.heartbeat_limit
        if op_class == "poll":
            return self.poll_limit
        return self.limit


class RateLimited(PodiumError):
    """A request over its identity's limit; ``retry_after_s``: until the window ends."""

    def __init__(
        self, kind: str, identity: str, op_class: str, limit: int, period_s: float, retry_after_s: float
    ):
        self.kind, self.identity, self.op_class = kind, identity, op_class
        self.limit, self.period_s, self.retry_after_s = limit, period_s, retry_after_s
        super().__init__(
            f"rate limit exceeded: {kind} '{identity}' made {limit} {op_class} requests in {period_s:g} s; "
            f"retry after {math.ceil(retry_after_s)} s"
        )

    def body(self) -> dict[str, Any]:
        """The error body (``ErrorBody``: error, field, detail)."""
        return {
            "error": str(self),
            "field": None,
            "detail": {
                self.kind: self.identity,
                "class": self.op_class,
                "limit": self.limit,
                "period_s": self.period_s,
                "retry_after_s": round(self.retry_after_s, 3),
            },
        }


@dataclass(slots=True)
class _Slice:
    window: int = -1
    left: int = 0  # reserved here and not granted yet
    exhausted: bool = False  # the store's budget for this window is gone
    version: int | None = None  # the record's version as last written or read here (None: unknown)
    granted: int = 0  # the store's count as last seen
    pending: asyncio.Future[None] | None = None  # a reservation write in flight


class RateLimiter:
    """Grants or refuses requests per ``(kind, identity, op_class)`` (see the module docstring)."""

    def __init__(self, store: Store, limits: RateLimits | None = None, *, clock: Clock | None = None) -> None:
        self.store = store
        self.limits = limits or RateLimits()
        self.clock = clock or system_clock
        self._slices: dict[str, _Slice] = {}

    async def check(self, kind: str, identity: str, op_class: str) -> None:
        """Count one request; raise :class:`RateLimited` when the window's budget is spent (nothing counted)."""
        key = f"{kind}:{identity}:{op_class}"
        limits = self.limits
        now = self.clock.now()
        window = int(now // limits.period_s)
        sl = self._slices.get(key)
        if sl is None:
            sl = self._slices[key] = _Slice()
        while True:
            if sl.window != window:
                sl.window, sl.left, sl.exhausted, sl.granted = window, 0, False, 0
            if sl.left > 0:
                sl.left -= 1
                return
            if sl.exhausted:
                retry = (window + 1) * limits.period_s - now
                raise RateLimited(kind, identity, op_class, limits.of(op_class), limits.period_s, retry)
            if sl.pending is not None:
                await asyncio.shield(sl.pending)
                continue
            sl.pending = asyncio.get_running_loop().create_future()
            try:
                await self._reserve(key, sl, window, limits.of(op_class))
            finally:
                fut, sl.pending = sl.pending, None
                if fut is not None and not fut.done():
                    fut.set_result(None)

    async def _reserve(self, key: str, sl: _Slice, window: int, limit: int) -> None:
        """Take a slice of the window's budget in the store (compare-and-set on the record's version)."""
        want = max(1, limit // 10)
        for _ in range(_MAX_CONFLICTS):
            if sl.version is None:
                rec = await self.store.get(RATELIMIT_KIND, key)
                sl.version = rec.version if rec is not None else 0
                sl.granted = rec.data["n"] if rec is not None and rec.data.get("w") == window else 0
            take = min(want, limit - sl.granted)
            if take <= 0:
                sl.exhausted = True
                return
            put = Put(RATELIMIT_KIND, key, {"w": window, "n": sl.granted + take}, sl.version)
            try:
                (rec,) = await self.store.apply(put, durable=False)
            except ConflictError:
                sl.version = None  # another instance reserved meanwhile: read and decide again
                continue
            sl.version, sl.granted, sl.left = rec.version, sl.granted + take, sl.left + take
            return
        raise StoreError(f"rate-limit counter {key!r} kept changing under {_MAX_CONFLICTS} writes")

    async def usage(self, kind: str, identity: str, op_class: str) -> int:
        """Requests granted (reserved, by every instance) in the current window, as the store holds them."""
        rec = await self.store.get(RATELIMIT_KIND, f"{kind}:{identity}:{op_class}")
        window = int(self.clock.now() // self.limits.period_s)
        return int(rec.data["n"]) if rec is not None and rec.data.get("w") == window else 0
