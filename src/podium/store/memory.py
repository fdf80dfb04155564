"""The in-memory backend: the test double and the fastest store, with the exact semantics of the others.

Nothing survives the process. Data is copied on the way in and out, so callers can never alias what the
store holds (as with a real database). All operations run on the event loop without awaiting in the
middle, which makes each :meth:`MemoryStore.apply` atomic.
"""

from __future__ import annotations

import builtins
import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from podium.clock import Clock
from podium.errors import ConflictError, LeaseLostError
from podium.store.base import (
    JSON,
    SCHEMA_VERSION,
    Ack,
    Append,
    Delete,
    Dequeue,
    Enqueue,
    HistoryEntry,
    Lease,
    Op,
    Put,
    Record,
    Store,
    notify_queues,
    status_filter,
)

__all__ = ["MemoryStore", "copy_json"]


_SCALARS = frozenset({str, int, float, bool, type(None)})


def copy_json(value: Any) -> Any:
    """A structural copy of JSON-like data (dicts, lists, scalars): much faster than ``deepcopy``.

    Tuples become lists, as they would through JSON.
    """
    kind = type(value)
    if kind is dict or isinstance(value, dict):
        return {k: v if type(v) in _SCALARS else copy_json(v) for k, v in value.items()}
    if kind is list or kind is tuple or isinstance(value, list | tuple):
        return [v if type(v) in _SCALARS else copy_json(v) for v in value]
    return value


@dataclass(slots=True)
class _Item:
    queue: str
    id: str
    payload: JSON
    priority: int
    seq: int
    enqueued_at: float
    due_at: float
    leased: bool = False
    token: int = 0
    owner: str = ""
    attempts: int = 0
    gen: int = 0  # bumps on every state change; stale heap entries are skipped


class _Queue:
    def __init__(self) -> None:
        self.items: dict[str, _Item] = {}
        self.ready: builtins.list[tuple[int, int, str, int]] = []  # (-priority, seq, id, gen)
        self.timed: builtins.list[tuple[float, int, str, int]] = []  # (due_at, seq, id, gen)

    def schedule(self, item: _Item, now: float) -> None:
        item.gen += 1
        if item.due_at <= now and not item.leased:
            heapq.heappush(self.ready, (-item.priority, item.seq, item.id, item.gen))
        else:
            heapq.heappush(self.timed, (item.due_at, item.seq, item.id, item.gen))

    def promote(self, now: float) -> None:
        """Move delayed items and expired leases that are due now into the ready heap."""
        timed = self.timed
        while timed and timed[0][0] <= now:
            _, _, id, gen = heapq.heappop(timed)
            item = self.items.get(id)
            if item is None or item.gen != gen:
                continue
            item.leased = False
            item.gen += 1
            heapq.heappush(self.ready, (-item.priority, item.seq, item.id, item.gen))

    def pop_ready(self) -> _Item | None:
        while self.ready:
            _, _, id, gen = heapq.heappop(self.ready)
            item = self.items.get(id)
            if item is not None and item.gen == gen:
                return item
        return None

    def next_timed(self) -> float | None:
        """When the earliest delayed item or lease falls due (stale heap entries are dropped)."""
        timed = self.timed
        while timed:
            due, _, id, gen = timed[0]
            item = self.items.get(id)
            if item is not None and item.gen == gen:
                return due
            heapq.heappop(timed)
        return None

    def peek_ready(self) -> tuple[int, int] | None:
        while self.ready:
            _, _, id, gen = self.ready[0]
            item = self.items.get(id)
            if item is not None and item.gen == gen:
                return (self.ready[0][0], self.ready[0][1])
            heapq.heappop(self.ready)
        return None


class MemoryStore(Store):
    """Everything in dicts and heaps; see the module docstring."""

    name = "memory"

    def __init__(self, *, clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        self._records: dict[str, dict[str, Record]] = {}
        self._queues: dict[str, _Queue] = {}
        self._locks: dict[str, tuple[str, int, float]] = {}
        self._history: builtins.list[HistoryEntry] = []
        self._by_subject: dict[str, builtins.list[HistoryEntry]] = {}
        self._fence = itertools.count(1)
        self._seq = itertools.count(1)

    async def schema_version(self) -> str | None:
        return SCHEMA_VERSION

    # --- apply ----------------------------------------------------------------------------------

    async def apply(self, *ops: Op, durable: bool = True) -> builtins.list[Any]:
        now = self.clock.now()
        self._check(ops, now)
        results: builtins.list[Any] = []
        append = results.append
        for op in ops:
            if isinstance(op, Append):  # the most frequent operations first
                entry = HistoryEntry(
                    next(self._seq),
                    op.subject_id,
                    op.event,
                    op.status,
                    now,
                    copy_json(op.data) if op.data else {},
                )
                self._history.append(entry)
                self._by_subject.setdefault(op.subject_id, []).append(entry)
                append(entry)
            elif isinstance(op, Put):
                kind = self._records.setdefault(op.kind, {})
                old = kind.get(op.id)
                version, created = (old.version + 1, old.created_at) if old else (1, now)
                kind[op.id] = Record(
                    op.kind, op.id, version, copy_json(op.data), op.status, op.group, created, now
                )
                # The caller keeps its own object; the store holds the copy made above.
                append(Record(op.kind, op.id, version, op.data, op.status, op.group, created, now))
            elif isinstance(op, Enqueue):
                q = self._queues.setdefault(op.queue, _Queue())
                if op.id in q.items:
                    append(None if op.lease_owner else False)
                    continue
                payload = copy_json(op.payload) if op.payload else {}
                item = _Item(op.queue, op.id, payload, op.priority, next(self._seq), now, now + op.delay_s)
                q.items[op.id] = item
                if op.lease_owner:
                    item.leased, item.token, item.owner = True, next(self._fence), op.lease_owner
                    item.attempts, item.due_at = 1, now + op.lease_s
                    append(self._lease(item))
                else:
                    append(True)
                q.schedule(item, now)
            elif isinstance(op, Dequeue):
                queue = self._queues.get(op.queue)
                append(queue is not None and queue.items.pop(op.id, None) is not None)
            elif isinstance(op, Ack):
                self._queues[op.lease.queue].items.pop(op.lease.id)
                append(None)
            else:
                append(self._records.get(op.kind, {}).pop(op.id, None) is not None)
        if self._waiters:
            self._notify(notify_queues(ops))
        return results

    def _check(self, ops: Sequence[Op], now: float) -> None:
        """Validate every precondition first, so a failing batch changes nothing."""
        for op in ops:
            if isinstance(op, Put | Delete) and op.expected_version is not None:
                old = self._records.get(op.kind, {}).get(op.id)
                actual = old.version if old else 0
                if actual != op.expected_version:
                    raise ConflictError(op.kind, op.id, op.expected_version, actual or None)
            elif isinstance(op, Ack):
                self._held(op.lease, now)

    def _held(self, lease: Lease, now: float) -> _Item:
        q = self._queues.get(lease.queue)
        item = q.items.get(lease.id) if q else None
        if item is None or not item.leased or item.token != lease.token or item.due_at <= now:
            raise LeaseLostError(f"lease on {lease.queue}/{lease.id} (token {lease.token}) is no longer held")
        return item

    @staticmethod
    def _out(rec: Record) -> Record:
        return Record(
            rec.kind,
            rec.id,
            rec.version,
            copy_json(rec.data),
            rec.status,
            rec.group,
            rec.created_at,
            rec.updated_at,
        )

    # --- records --------------------------------------------------------------------------------

    async def get(self, kind: str, id: str) -> Record | None:
        rec = self._records.get(kind, {}).get(id)
        return self._out(rec) if rec else None

    def _match(
        self, kind: str, status: str | Sequence[str] | None, group: str | None
    ) -> builtins.list[Record]:
        statuses = status_filter(status)
        return [
            r
            for r in self._records.get(kind, {}).values()
            if (statuses is None or r.status in statuses) and (group is None or r.group == group)
        ]

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
        rows = sorted(self._match(kind, status, group), key=lambda r: r.id, reverse=descending)
        if after is not None:
            rows = [r for r in rows if (r.id < after if descending else r.id > after)]
        return [self._out(r) for r in rows[:limit]]

    async def count(
        self, kind: str, *, status: str | Sequence[str] | None = None, group: str | None = None
    ) -> int:
        return len(self._match(kind, status, group))

    # --- queues ---------------------------------------------------------------------------------

    async def take_now(
        self, queues: Sequence[str], *, owner: str, lease_s: float, limit: int
    ) -> builtins.list[Lease]:
        now = self.clock.now()
        out: builtins.list[Lease] = []
        live = [self._queues[name] for name in queues if name in self._queues]
        for q in live:
            q.promote(now)
        while len(out) < limit:
            best: _Queue | None = None
            best_key: tuple[int, int] | None = None
            for candidate in live:
                key = candidate.peek_ready()
                if key is not None and (best_key is None or key < best_key):
                    best, best_key = candidate, key
            if best is None:
                break
            item = best.pop_ready()
            assert item is not None
            item.leased, item.token, item.owner = True, next(self._fence), owner
            item.attempts += 1
            item.due_at = now + lease_s
            best.schedule(item, now)
            out.append(self._lease(item))
        return out

    @staticmethod
    def _lease(item: _Item) -> Lease:
        return Lease(
            item.queue,
            item.id,
            copy_json(item.payload),
            item.priority,
            item.attempts,
            item.token,
            item.owner,
            item.due_at,
            item.enqueued_at,
        )

    async def next_due(self, queues: Sequence[str]) -> float | None:
        dues = [
            due
            for name in queues
            if name in self._queues
            if (due := self._queues[name].next_timed()) is not None
        ]
        return min(dues) if dues else None

    async def extend(self, lease: Lease, lease_s: float) -> Lease:
        now = self.clock.now()
        item = self._held(lease, now)
        item.due_at = now + lease_s
        self._queues[lease.queue].schedule(item, now)
        return self._lease(item)

    async def nack(self, lease: Lease, *, delay_s: float = 0.0) -> None:
        now = self.clock.now()
        item = self._held(lease, now)
        item.leased, item.owner = False, ""
        item.due_at = now + delay_s
        self._queues[lease.queue].schedule(item, now)
        self._notify([lease.queue])

    async def queue_depth(self, queue: str) -> dict[str, int]:
        now = self.clock.now()
        depth = {"ready": 0, "delayed": 0, "leased": 0}
        q = self._queues.get(queue)
        for item in q.items.values() if q else ():
            if item.leased and item.due_at > now:
                depth["leased"] += 1
            elif not item.leased and item.due_at > now:
                depth["delayed"] += 1
            else:
                depth["ready"] += 1
        return depth

    # --- locks ----------------------------------------------------------------------------------

    async def acquire_lock(self, name: str, owner: str, *, ttl_s: float) -> int | None:
        now = self.clock.now()
        held = self._locks.get(name)
        if held is not None and held[2] > now and held[0] != owner:
            return None
        token = next(self._fence)
        self._locks[name] = (owner, token, now + ttl_s)
        return token

    async def refresh_lock(self, name: str, owner: str, token: int, *, ttl_s: float) -> bool:
        now = self.clock.now()
        held = self._locks.get(name)
        if held is None or held[0] != owner or held[1] != token or held[2] <= now:
            return False
        self._locks[name] = (owner, token, now + ttl_s)
        return True

    async def release_lock(self, name: str, owner: str, token: int) -> bool:
        held = self._locks.get(name)
        if held is None or held[0] != owner or held[1] != token:
            return False
        del self._locks[name]
        return True

    # --- history --------------------------------------------------------------------------------

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
        out: builtins.list[HistoryEntry] = []
        entries = self._history if subject_id is None else self._by_subject.get(subject_id, [])
        for e in entries:
            if (
                e.seq > after_seq
                and (subject_id is None or e.subject_id == subject_id)
                and (event is None or e.event == event)
                and (status is None or e.status == status)
                and (since is None or e.ts >= since)
                and (until is None or e.ts < until)
            ):
                out.append(HistoryEntry(e.seq, e.subject_id, e.event, e.status, e.ts, copy_json(e.data)))
                if len(out) >= limit:
                    break
        return out
