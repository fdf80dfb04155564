"""Plan quotas kept in the store, so that every server on one store enforces one count per client.

One record per client that has a counted quota (``requests_per_minute`` or ``monthly_attempts``):
kind ``"quota"``, id the client's name, data ``{"minute": <int(now // 60)>, "minute_used": n,
"month": "YYYY-MM", "month_used": n}``. A count belongs to its window: a record whose window is not the
current one counts as zero. Usage therefore survives a restart and is shared by every process on the
store; the windows roll over by the injected clock.

Atomicity: each count is a compare-and-set :class:`~podium.store.Put` guarded by the record's version
(``expected_version``, 0 for a new record). A stale version (another process counted first) re-reads
the record and decides again, so no process ever grants past a limit. Cost per counted request: one store
write, no read -- the record this process wrote last is remembered, and is right unless another process
wrote since (then the write conflicts and the record is read). Within one process, requests for one client
that arrive while its write is in flight are *coalesced*: the next write counts all of them at once (each
one is still granted or refused on its own, in arrival order). Writes are ``durable=False``: a job's
creation, written right after, flushes them; a process crash keeps them.

``max_active_jobs`` is a check, not a count: the caller passes the number of active jobs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from podium.clock import Clock, system_clock
from podium.errors import ConflictError, PodiumError, StoreError
from podium.server.security import ClientConfig
from podium.store import Put, Record, Store

__all__ = ["QUOTA_KIND", "QuotaExceeded", "QuotaTracker"]

QUOTA_KIND = "quota"
_MAX_CONFLICTS = 64  # each conflict means another process counted meanwhile: progress, never a livelock


class QuotaExceeded(PodiumError):
    """A client went over a quota of its plan. ``resets_at``/``retry_after_s``: when the window ends
    (``None`` for ``max_active_jobs``, which frees up as jobs end)."""

    def __init__(
        self,
        client: ClientConfig,
        quota: str,
        limit: int,
        retry_after_s: float | None,
        resets_at: float | None = None,
    ) -> None:
        self.client, self.quota, self.limit = client, quota, limit
        self.retry_after_s, self.resets_at = retry_after_s, resets_at
        when = (
            f"; resets at {_iso(resets_at)}"
            if resets_at is not None
            else "; frees up as its jobs end"
            if quota == "max_active_jobs"
            else ""
        )
        super().__init__(
            f"quota exceeded: client '{client.name}' (plan '{client.plan}') "
            f"reached its {quota} limit of {limit}{when}"
        )

    def body(self) -> dict[str, Any]:
        return {
            "error": str(self),
            "field": self.quota,
            "detail": {
                "client": self.client.name,
                "plan": self.client.plan,
                "quota": self.quota,
                "limit": self.limit,
                "retry_after_s": self.retry_after_s,
                "resets_at": _iso(self.resets_at) if self.resets_at is not None else None,
            },
        }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _next_month(now: float) -> float:
    day = datetime.fromtimestamp(now, UTC)
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


@dataclass(slots=True)
class _Ask:
    """One request to count: a request (per minute) and/or a job submission (per month)."""

    request: bool
    submission: bool
    future: asyncio.Future[QuotaExceeded | None] | None = None


@dataclass(slots=True)
class _Client:
    """This process's view of one client's counter."""

    config: ClientConfig
    known: Record | None = None  # the record as this process last read or wrote it
    busy: bool = False  # a write is in flight; new asks wait in ``queued`` for the next one
    queued: list[_Ask] = field(default_factory=list)


class QuotaTracker:
    """Counts requests (per minute) and job submissions (per calendar month, UTC) for each client, in
    ``store`` (see the module docstring). Clients without those quotas cost nothing."""

    def __init__(self, store: Store, *, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock or system_clock
        self._clients: dict[str, _Client] = {}
        self._drains: set[asyncio.Task[None]] = set()
        self._minute, self._month = -1, ""

    async def count(self, client: ClientConfig, *, request: bool = True, submission: bool = False) -> None:
        """Count one API request and/or one job submission (one write for both); raise
        :class:`QuotaExceeded` past ``requests_per_minute`` (nothing counted) or ``monthly_attempts``
        (the request still counts: it was made)."""
        await self._count(client, _Ask(request, submission))

    @staticmethod
    def check_active(client: ClientConfig, active_jobs: int | None) -> None:
        """Raise :class:`QuotaExceeded` if ``active_jobs`` reaches the client's ``max_active_jobs``."""
        limit = client.quotas.max_active_jobs
        if limit is not None and active_jobs is not None and active_jobs >= limit:
            raise QuotaExceeded(client, "max_active_jobs", limit, None)

    async def usage(self, client: ClientConfig) -> dict[str, int]:
        """The client's counts in the current windows, as the store holds them."""
        record = await self.store.get(QUOTA_KIND, client.name)
        minute, month = self._windows(self.clock.now())
        data = record.data if record is not None else {}
        return {
            "requests_per_minute": data.get("minute_used", 0) if data.get("minute") == minute else 0,
            "monthly_attempts": data.get("month_used", 0) if data.get("month") == month else 0,
        }

    async def close(self) -> None:
        """Wait for the writes in flight."""
        while self._drains:
            await asyncio.gather(*self._drains, return_exceptions=True)

    # --- counting ---------------------------------------------------------------------------------

    def _windows(self, now: float) -> tuple[int, str]:
        """The current minute (``int(now // 60)``) and month (``"YYYY-MM"``, UTC)."""
        minute = int(now // 60)
        if minute != self._minute:  # a month starts on a minute: format it once a minute
            self._minute, self._month = minute, datetime.fromtimestamp(now, UTC).strftime("%Y-%m")
        return minute, self._month

    @staticmethod
    def counts(client: ClientConfig) -> bool:
        """Whether the client's requests are counted (it has a per-minute or a monthly quota)."""
        q = client.quotas
        return q.requests_per_minute is not None or q.monthly_attempts is not None

    async def _count(self, client: ClientConfig, ask: _Ask) -> None:
        if not self.counts(client):
            return
        state = self._clients.get(client.name)
        if state is None:
            state = self._clients[client.name] = _Client(client)
        state.config = client
        if state.busy:
            ask.future = asyncio.get_running_loop().create_future()
            state.queued.append(ask)
            outcome = await asyncio.shield(ask.future)
        else:
            state.busy = True
            try:
                outcome = (await self._write(state, [ask]))[0]
            finally:
                if state.queued:
                    task = asyncio.ensure_future(self._drain(state))
                    self._drains.add(task)
                    task.add_done_callback(self._drains.discard)
                else:
                    state.busy = False
        if outcome is not None:
            raise outcome

    async def _drain(self, state: _Client) -> None:
        """Count the asks that queued up behind a write, one write per batch, until none are left."""
        try:
            while state.queued:
                batch, state.queued = state.queued, []
                try:
                    outcomes = await self._write(state, batch)
                except BaseException as exc:
                    for ask in batch:
                        if ask.future is not None and not ask.future.done():
                            ask.future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for ask, outcome in zip(batch, outcomes, strict=True):
                    if ask.future is not None and not ask.future.done():
                        ask.future.set_result(outcome)
        finally:
            state.busy = False
            for ask in state.queued:  # only when cancelled: nobody will write these any more
                if ask.future is not None and not ask.future.done():
                    ask.future.set_exception(StoreError("the quota tracker stopped"))
            state.queued = []

    async def _write(self, state: _Client, asks: list[_Ask]) -> list[QuotaExceeded | None]:
        """Decide ``asks`` in order against the current counts and write the new counts (compare-and-set
        on the record's version; on a conflict, read the record and decide again)."""
        client, q = state.config, state.config.quotas
        for _ in range(_MAX_CONFLICTS):
            now = self.clock.now()
            minute, month = self._windows(now)
            record = state.known
            if record is None:
                record = await self.store.get(QUOTA_KIND, client.name)
            data = record.data if record is not None else {}
            minute_used = data.get("minute_used", 0) if data.get("minute") == minute else 0
            month_used = data.get("month_used", 0) if data.get("month") == month else 0
            outcomes: list[QuotaExceeded | None] = []
            changed = False
            for ask in asks:
                if ask.request:
                    limit = q.requests_per_minute
                    if limit is not None and minute_used >= limit:
                        reset = (minute + 1) * 60.0
                        outcomes.append(
                            QuotaExceeded(client, "requests_per_minute", limit, round(reset - now, 3), reset)
                        )
                        continue
                    minute_used += 1
                    changed = True
                if ask.submission:
                    limit = q.monthly_attempts
                    if limit is not None and month_used >= limit:
                        reset = _next_month(now)
                        outcomes.append(
                            QuotaExceeded(client, "monthly_attempts", limit, round(reset - now, 3), reset)
                        )
                        continue
                    month_used += 1
                    changed = True
                outcomes.append(None)
            if not changed:
                return outcomes  # every ask refused: counts only ever grow within a window, nothing to write
            new = {"minute": minute, "minute_used": minute_used, "month": month, "month_used": month_used}
            put = Put(QUOTA_KIND, client.name, new, record.version if record is not None else 0)
            try:
                state.known = (await self.store.apply(put, durable=False))[0]
            except ConflictError:
                state.known = None  # another process counted: read and decide again
                continue
            return outcomes
        raise StoreError(
            f"quota counter of client '{client.name}' kept changing under {_MAX_CONFLICTS} writes"
        )
