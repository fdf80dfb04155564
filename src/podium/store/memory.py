"""The in-memory backend: the test double and the fastest store, with the exact semantics of the others.

Nothing survives the process. Data is held encoded, as the SQL backends hold it (JSON through orjson,
non-string keys written as strings): encoding on the way in and decoding on the way out means callers
can never alias what the store holds, values that cannot be stored fail here as they would there, and
held data costs the garbage collector nothing. A result that hands back what the caller wrote (a
:class:`~podium.store.base.Put`'s record, an :class:`~podium.store.base.Append`'s entry, a pre-leased
:class:`~podium.store.base.Enqueue`'s lease) carries the caller's own object, never the store's. All
operations run on the event loop without awaiting in the middle, which makes each
:meth:`MemoryStore.apply` atomic.
"""

from __future__ import annotations

import builtins
import heapq
import itertools
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from podium.clock import Clock
from podium.errors import ConflictError, LeaseLostError
from podium.store.base import (
    JSON,
    JSON_OPTIONS,
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
    Wake,
    load_json,
    notify_queues,
    status_filter,
    unstorable,
)

__all__ = ["MemoryStore"]


# Data is held as str (orjson's bytes decoded, as dump_json does): holding thousands of the bytes objects
# themselves (each a 1 KiB allocation shrunk in place) made every write slower than a structural copy of
# the data. apply() calls orjson itself with dump_json's options (no Python frame in between, once per
# operation), and builds the named-tuple results with tuple.__new__ (what their _make does, without the
# Python-level __new__).
_orjson_dumps, _loads = orjson.dumps, load_json
_new = tuple.__new__
_EMPTY = "{}"


# Held rows are plain tuples of strings and numbers, not named tuples: the garbage collector stops tracking
# such a tuple after its first pass (never a tuple subclass's), so however many jobs the store holds, later
# collections do not scan them.
_Row = tuple[str, str, int, str, str | None, str | None, float, float]  # a Record, its data encoded
_Entry = tuple[int, str, str, str | None, float, str]  # a HistoryEntry, its data encoded


def _record(row: _Row) -> Record:
    return Record(row[0], row[1], row[2], _loads(row[3]), row[4], row[5], row[6], row[7])


@dataclass(slots=True)
class _Item:
    queue: str
    id: str
    payload: str
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
        self._records: dict[str, dict[str, _Row]] = {}
        self._queues: dict[str, _Queue] = {}
        self._locks: dict[str, tuple[str, int, float]] = {}
        self._history: builtins.list[_Entry] = []
        # Positions in _history per subject: arrays of integers, which the garbage collector never tracks.
        self._by_subject: dict[str, array[int]] = {}
        self._fence = itertools.count(1)
        self._seq = itertools.count(1)

    async def schema_version(self) -> str | None:
        return SCHEMA_VERSION

    # --- apply ----------------------------------------------------------------------------------

    async def apply(self, *ops: Op, durable: bool = True) -> builtins.list[Any]:
        now = self.clock.now()
        blobs = self._prepare(ops, now)
        results: builtins.list[Any] = []
        append = results.append
        records, queues = self._records, self._queues
        history, by_subject = self._history, self._by_subject
        for op, blob in zip(ops, blobs, strict=True):
            if isinstance(op, Append):  # the most frequent operations first
                seq = next(self._seq)
                subject = by_subject.get(op.subject_id)
                if subject is None:
                    subject = by_subject[op.subject_id] = array("q")
                subject.append(len(history))
                history.append((seq, op.subject_id, op.event, op.status, now, blob or _EMPTY))
                # The caller keeps its own object; the store holds the encoding made above.
                append(_new(HistoryEntry, (seq, op.subject_id, op.event, op.status, now, op.data or {})))
            elif isinstance(op, Put):
                table = records.get(op.kind)
                if table is None:
                    table = records[op.kind] = {}
                old = table.get(op.id)
                version, created = (old[2] + 1, old[6]) if old else (1, now)
                table[op.id] = (op.kind, op.id, version, blob or _EMPTY, op.status, op.group, created, now)
                append(_new(Record, (op.kind, op.id, version, op.data, op.status, op.group, created, now)))
            elif isinstance(op, Enqueue):
                q = queues.get(op.queue)
                if q is None:
                    q = queues[op.queue] = _Queue()
                if op.id in q.items:
                    append(None if op.lease_owner else False)
                    continue
                item = _Item(
                    op.queue, op.id, blob or _EMPTY, op.priority, next(self._seq), now, now + op.delay_s
                )
                q.items[op.id] = item
                if op.lease_owner:
                    item.leased, item.token, item.owner = True, next(self._fence), op.lease_owner
                    item.attempts, item.due_at = 1, now + op.lease_s
                    append(self._lease(item, op.payload or {}))
                else:
                    append(True)
                q.schedule(item, now)
            elif isinstance(op, Dequeue):
                queue = queues.get(op.queue)
                append(queue is not None and queue.items.pop(op.id, None) is not None)
            elif isinstance(op, Ack):
                queues[op.lease.queue].items.pop(op.lease.id)
                append(None)
            elif isinstance(op, Wake):
                append(None)
            else:
                table = records.get(op.kind)
                append(table is not None and table.pop(op.id, None) is not None)
        if self._waiters:
            self._notify(notify_queues(ops))
        return results

    def _prepare(self, ops: Sequence[Op], now: float) -> builtins.list[str | None]:
        """Check every precondition and encode every value first, so a failing batch changes nothing."""
        blobs: builtins.list[str | None] = []
        append = blobs.append
        records = self._records
        op: Op | None = None
        try:
            for op in ops:
                if isinstance(op, Append):
                    append(_orjson_dumps(op.data, option=JSON_OPTIONS).decode() if op.data else _EMPTY)
                    continue
                if isinstance(op, (Put, Delete)):
                    if op.expected_version is not None:
                        table = records.get(op.kind)
                        old = table.get(op.id) if table is not None else None
                        actual = old[2] if old else 0
                        if actual != op.expected_version:
                            raise ConflictError(op.kind, op.id, op.expected_version, actual or None)
                    append(
                        _orjson_dumps(op.data, option=JSON_OPTIONS).decode() if isinstance(op, Put) else None
                    )
                elif isinstance(op, Enqueue):
                    append(_orjson_dumps(op.payload, option=JSON_OPTIONS).decode() if op.payload else _EMPTY)
                else:
                    if isinstance(op, Ack):
                        self._held(op.lease, now)
                    append(None)
        except TypeError as exc:  # a value JSON cannot hold: say where
            raise unstorable(
                op.payload if isinstance(op, Enqueue) else getattr(op, "data", None), exc
            ) from None
        return blobs

    def _held(self, lease: Lease, now: float) -> _Item:
        q = self._queues.get(lease.queue)
        item = q.items.get(lease.id) if q else None
        if item is None or not item.leased or item.token != lease.token or item.due_at <= now:
            raise LeaseLostError(f"lease on {lease.queue}/{lease.id} (token {lease.token}) is no longer held")
        return item

    # --- records --------------------------------------------------------------------------------

    async def get(self, kind: str, id: str) -> Record | None:
        return self.peek(kind, id)

    def _row(self, kind: str, id: str) -> _Row | None:
        table = self._records.get(kind)
        return table.get(id) if table is not None else None

    def peek(self, kind: str, id: str) -> Record | None:
        row = self._row(kind, id)
        return _record(row) if row is not None else None

    def peek_mark(self, kind: str, id: str) -> tuple[int, float, float] | None:  # as peek, not decoded
        row = self._row(kind, id)
        return (row[2], row[6], row[7]) if row is not None else None

    def _match(self, kind: str, status: str | Sequence[str] | None, group: str | None) -> builtins.list[_Row]:
        statuses = status_filter(status)
        return [
            r
            for r in self._records.get(kind, {}).values()
            if (statuses is None or r[4] in statuses) and (group is None or r[5] == group)
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
        rows = sorted(self._match(kind, status, group), key=lambda r: r[1], reverse=descending)
        if after is not None:
            rows = [r for r in rows if (r[1] < after if descending else r[1] > after)]
        return [_record(r) for r in rows[:limit]]

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
    def _lease(item: _Item, payload: JSON | None = None) -> Lease:
        """The lease on ``item``, carrying ``payload`` (the enqueuer's own object) or a decoded copy."""
        return Lease(
            item.queue,
            item.id,
            _loads(item.payload) if payload is None else payload,
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
        if subject_id is None:
            entries: Iterable[_Entry] = self._history
        else:
            entries = map(self._history.__getitem__, self._by_subject.get(subject_id, ()))
        for e in entries:
            if (
                e[0] > after_seq
                and (subject_id is None or e[1] == subject_id)
                and (event is None or e[2] == event)
                and (status is None or e[3] == status)
                and (since is None or e[4] >= since)
                and (until is None or e[4] < until)
            ):
                out.append(HistoryEntry(e[0], e[1], e[2], e[3], e[4], _loads(e[5])))
                if len(out) >= limit:
                    break
        return out
