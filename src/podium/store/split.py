"""A split deployment: state (records, queues, locks) in one store, history in another.

Avtomatika's common production set-up keeps job state in Redis and the history in PostgreSQL or SQLite;
``open_store("redis://host/0?prefix=lab&history=sqlite:///podium-data/history.db")`` builds that as one
setting (the ``history`` query argument names the history's store; any store URL works on either side).

Each :meth:`SplitStore.apply` runs its state operations as one transaction on the state store, then
appends its :class:`~podium.store.base.Append` entries to the history store: a failing batch (a stale
version, a lost lease, a value JSON cannot hold) writes neither, but a crash between the two writes loses
that transition's history entries (the state is never behind its history). History ``seq`` numbers come
from the history store.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from podium.store.base import Append, Fetch, HistoryEntry, Lease, Op, Record, Store, dump_json

__all__ = ["SplitStore", "split_history_url"]


def split_history_url(url: str) -> tuple[str, str | None]:
    """``(state URL, history URL or None)`` from a store URL with an optional ``history=`` argument."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    history = [value for key, value in query if key == "history"]
    if not history:
        return url, None
    if not history[-1]:
        raise ValueError(f"{url!r}: history= names no store URL")
    rest = urlencode([(key, value) for key, value in query if key != "history"])
    return urlunsplit(parts._replace(query=rest)), history[-1]


class SplitStore(Store):
    """State operations on ``state``, history on ``history`` (see the module docstring). Opening and
    closing the split store opens and closes both."""

    name = "split"

    def __init__(self, state: Store, history: Store) -> None:
        super().__init__(clock=state.clock)
        self.state, self.history_store = state, history
        self.fetches_in_take = state.fetches_in_take

    async def open(self) -> None:
        await self.state.open()
        await self.history_store.open()

    async def close(self) -> None:
        try:
            await self.state.close()
        finally:
            await self.history_store.close()

    async def schema_version(self) -> str | None:
        return await self.state.schema_version()

    async def apply(self, *ops: Op, durable: bool = True) -> builtins.list[Any]:
        entries = [op for op in ops if isinstance(op, Append)]
        if not entries:
            return await self.state.apply(*ops, durable=durable)
        for entry in entries:  # a value JSON cannot hold fails the batch before the state is written
            if entry.data:
                dump_json(entry.data)
        state_ops = [op for op in ops if not isinstance(op, Append)]
        state_results = iter(await self.state.apply(*state_ops, durable=durable) if state_ops else [])
        history_results = iter(await self.history_store.apply(*entries, durable=durable))
        return [next(history_results if isinstance(op, Append) else state_results) for op in ops]

    # --- state: everything else goes to the state store ------------------------------------------

    def watch(self, name: str) -> asyncio.Future[None]:
        return self.state.watch(name)  # Wake ops go to the state store, whose listener hears other instances

    def unwatch(self, name: str, waiter: asyncio.Future[None]) -> None:
        self.state.unwatch(name, waiter)

    async def get(self, kind: str, id: str) -> Record | None:
        return await self.state.get(kind, id)

    def peek(self, kind: str, id: str) -> Record | None:
        return self.state.peek(kind, id)

    def peek_mark(self, kind: str, id: str) -> tuple[int, float, float] | None:
        return self.state.peek_mark(kind, id)

    async def get_many(self, keys: Sequence[tuple[str, str]]) -> builtins.list[Record | None]:
        return await self.state.get_many(keys)

    async def list(
        self,
        kind: str,
        *,
        status: str | Sequence[str] | None = None,
        group: str | None = None,
        after: str | None = None,
        limit: int = 100,
        descending: bool = False,
    ) -> builtins.list[Record]:
        return await self.state.list(
            kind, status=status, group=group, after=after, limit=limit, descending=descending
        )

    async def count(
        self, kind: str, *, status: str | Sequence[str] | None = None, group: str | None = None
    ) -> int:
        return await self.state.count(kind, status=status, group=group)

    async def take(
        self,
        queue: str | Sequence[str],
        *,
        owner: str,
        lease_s: float,
        limit: int = 1,
        wait_s: float = 0.0,
        fetch: Fetch | None = None,
    ) -> builtins.list[Lease]:
        # The state store's own long poll: its enqueues (and other instances') wake it.
        return await self.state.take(
            queue, owner=owner, lease_s=lease_s, limit=limit, wait_s=wait_s, fetch=fetch
        )

    async def take_now_fetching(
        self, queues: Sequence[str], *, owner: str, lease_s: float, limit: int, fetch: Fetch | None
    ) -> builtins.list[Lease]:
        return await self.state.take_now_fetching(
            queues, owner=owner, lease_s=lease_s, limit=limit, fetch=fetch
        )

    async def take_now(
        self, queues: Sequence[str], *, owner: str, lease_s: float, limit: int
    ) -> builtins.list[Lease]:
        return await self.state.take_now(queues, owner=owner, lease_s=lease_s, limit=limit)

    async def next_due(self, queues: Sequence[str]) -> float | None:
        return await self.state.next_due(queues)

    async def extend(self, lease: Lease, lease_s: float) -> Lease:
        return await self.state.extend(lease, lease_s)

    async def nack(self, lease: Lease, *, delay_s: float = 0.0) -> None:
        await self.state.nack(lease, delay_s=delay_s)

    async def queue_depth(self, queue: str) -> dict[str, int]:
        return await self.state.queue_depth(queue)

    async def acquire_lock(self, name: str, owner: str, *, ttl_s: float) -> int | None:
        return await self.state.acquire_lock(name, owner, ttl_s=ttl_s)

    async def refresh_lock(self, name: str, owner: str, token: int, *, ttl_s: float) -> bool:
        return await self.state.refresh_lock(name, owner, token, ttl_s=ttl_s)

    async def release_lock(self, name: str, owner: str, token: int) -> bool:
        return await self.state.release_lock(name, owner, token)

    # --- history ----------------------------------------------------------------------------------

    async def history(
        self,
        subject_id: str | None = None,
        *,
        event: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after_seq: int = 0,
        limit: int = 1000,
    ) -> builtins.list[HistoryEntry]:
        return await self.history_store.history(
            subject_id, event=event, status=status, since=since, until=until, after_seq=after_seq, limit=limit
        )
