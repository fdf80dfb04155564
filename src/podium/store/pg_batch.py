"""Group commit for the PostgreSQL store: many :meth:`~podium.store.Store.apply` calls as a few statements.

A batch of calls is planned here, without I/O, against the rows it touches as they stand (read and locked
``FOR UPDATE`` by the caller in one query for both tables): each call is checked in order against the state the
calls before it leave (versions, queue items, leases), so a call that conflicts fails alone and changes
nothing, exactly as if each had run in its own transaction. What the successful calls do is then reduced
to its net effect per row -- rows to insert, update and delete per table, and history lines to append --
which the store writes with array statements (``unnest``): one for the records and queue items, one for the
history lines, whatever the batch's size.

Results that depend on the database (history ``seq``, fencing tokens of pre-leased items) are filled in
after those statements return. :class:`Fallback` means "run this batch call by call instead" (a case the
plan does not reduce, or an insert that another instance won in the meantime).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from podium.errors import ConflictError, LeaseLostError
from podium.store.base import (
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
    Wake,
    notify_queues,
)

__all__ = [
    "UNREAD",
    "BatchCall",
    "BatchPlan",
    "Fallback",
    "HeldRow",
    "Prediction",
    "RecordRow",
    "plan_batch",
    "predict",
]

Key = tuple[str, str]


class Fallback(Exception):
    """The batch cannot be reduced: run it call by call."""


class BatchCall(NamedTuple):
    """One call of a batch: its operations, their JSON encodings and the clock time it was made at."""

    ops: Sequence[Op]
    blobs: Sequence[str | None]
    now: float


class RecordRow(NamedTuple):
    version: int
    created_at: float


class HeldRow(NamedTuple):
    """What the plan needs of a queue item: whether it is leased, by which token, until when."""

    leased: bool
    token: int | None  # None: inserted by this batch (no call can hold its lease yet)
    due_at: float


@dataclass
class _NewItem:
    key: Key
    priority: int
    payload: str
    leased: int
    due_at: float
    owner: str
    enqueued_at: float
    call: int
    index: int


@dataclass
class BatchPlan:
    """The net writes of a batch, and per call either its results or its error."""

    outcomes: list[list[Any] | BaseException] = field(default_factory=list)
    record_inserts: list[tuple[Any, ...]] = field(default_factory=list)
    record_updates: list[tuple[Any, ...]] = field(default_factory=list)
    record_deletes: list[Key] = field(default_factory=list)
    queue_deletes: list[Key] = field(default_factory=list)
    queue_inserts: list[_NewItem] = field(default_factory=list)
    appends: list[tuple[int, int, tuple[Any, ...]]] = field(default_factory=list)  # (call, index, row)
    queues_to_notify: set[str] = field(default_factory=set)

    def fill_tokens(self, tokens: dict[Key, int]) -> None:
        """Put the fencing tokens the insert returned into the pre-leased items' leases."""
        for item in self.queue_inserts:
            if item.leased:
                result = self.outcomes[item.call]
                assert isinstance(result, list)
                result[item.index] = result[item.index]._replace(token=tokens[item.key])

    def fill_seqs(self, seqs: Sequence[int]) -> None:
        """Put the history sequence numbers (in insertion order) into the appends' entries."""
        for (call, index, _), seq in zip(self.appends, sorted(seqs), strict=True):
            result = self.outcomes[call]
            assert isinstance(result, list)
            result[index] = result[index]._replace(seq=seq)


def plan_batch(
    calls: Sequence[BatchCall], records: dict[Key, RecordRow], items: dict[Key, HeldRow]
) -> BatchPlan:
    """Check each call in order against ``records``/``items`` (the touched rows as read; absent keys do
    not exist) and reduce the successful ones to net writes. Raises :class:`Fallback`."""
    plan = BatchPlan()
    rec_state: dict[Key, RecordRow | None] = dict(records)
    q_state: dict[Key, HeldRow | None] = dict(items)
    final_rec: dict[Key, tuple[Any, ...] | None] = {}  # key -> the row to write, or None: delete
    final_q: dict[Key, _NewItem | None] = {}
    appends: list[tuple[int, int, tuple[Any, ...]]] = []
    for number, call in enumerate(calls):
        recs: dict[Key, RecordRow | None] = {}
        qs: dict[Key, HeldRow | None] = {}
        writes_rec: dict[Key, tuple[Any, ...] | None] = {}
        writes_q: dict[Key, _NewItem | None] = {}
        call_appends: list[tuple[int, int, tuple[Any, ...]]] = []
        results: list[Any] = []
        now = call.now
        try:
            for index, (op, blob) in enumerate(zip(call.ops, call.blobs, strict=True)):
                if isinstance(op, Append):
                    call_appends.append((number, index, (op.subject_id, op.event, op.status, now, blob)))
                    results.append(HistoryEntry(0, op.subject_id, op.event, op.status, now, op.data or {}))
                elif isinstance(op, (Put, Delete)):
                    key = (op.kind, op.id)
                    cur = recs[key] if key in recs else rec_state.get(key)
                    actual = cur.version if cur is not None else 0
                    if op.expected_version is not None and actual != op.expected_version:
                        raise ConflictError(op.kind, op.id, op.expected_version, actual or None)
                    if isinstance(op, Delete):
                        recs[key] = writes_rec[key] = None
                        results.append(cur is not None)
                        continue
                    created = cur.created_at if cur is not None else now
                    recs[key] = RecordRow(actual + 1, created)
                    writes_rec[key] = (op.kind, op.id, actual + 1, op.status, op.group, blob, created, now)
                    results.append(
                        Record(op.kind, op.id, actual + 1, op.data, op.status, op.group, created, now)
                    )
                elif isinstance(op, Enqueue):
                    key = (op.queue, op.id)
                    cur_item = qs[key] if key in qs else q_state.get(key)
                    if cur_item is not None:
                        results.append(None if op.lease_owner else False)
                        continue
                    leased = 1 if op.lease_owner else 0
                    due = now + (op.lease_s if leased else op.delay_s)
                    qs[key] = HeldRow(bool(leased), None, due)
                    writes_q[key] = _NewItem(
                        key, op.priority, blob or "{}", leased, due, op.lease_owner or "", now, number, index
                    )
                    if leased:
                        lease = Lease(
                            op.queue,
                            op.id,
                            op.payload or {},
                            op.priority,
                            1,
                            0,
                            op.lease_owner or "",
                            due,
                            now,
                        )
                        results.append(lease)
                    else:
                        results.append(True)
                elif isinstance(op, Dequeue):
                    key = (op.queue, op.id)
                    cur_item = qs[key] if key in qs else q_state.get(key)
                    qs[key] = writes_q[key] = None
                    results.append(cur_item is not None)
                elif isinstance(op, Wake):
                    results.append(None)
                else:
                    assert isinstance(op, Ack)
                    lease = op.lease
                    key = (lease.queue, lease.id)
                    cur_item = qs[key] if key in qs else q_state.get(key)
                    if (
                        cur_item is None
                        or not cur_item.leased
                        or cur_item.token != lease.token
                        or cur_item.due_at <= now
                    ):
                        raise LeaseLostError(
                            f"lease on {lease.queue}/{lease.id} (token {lease.token}) is no longer held"
                        )
                    qs[key] = writes_q[key] = None
                    results.append(None)
        except (ConflictError, LeaseLostError) as refused:
            plan.outcomes.append(refused)
            continue
        rec_state.update(recs)
        q_state.update(qs)
        for key, value in writes_q.items():
            pending = final_q.get(key)
            if value is None and pending is not None and pending.leased:
                raise Fallback("a pre-leased item removed in the same batch")  # its token was never drawn
            final_q[key] = value
        final_rec.update(writes_rec)
        appends.extend(call_appends)
        plan.queues_to_notify |= notify_queues(call.ops)
        plan.outcomes.append(results)
    for key, row in final_rec.items():
        existed = key in records
        if row is None:
            if existed:
                plan.record_deletes.append(key)
        elif existed:
            plan.record_updates.append(row)
        else:
            plan.record_inserts.append(row)
    for key, item in final_q.items():
        if key in items:
            plan.queue_deletes.append(key)
        if item is not None:
            plan.queue_inserts.append(item)
    plan.appends = appends
    return plan


UNREAD = float("nan")
"""The ``created_at`` a :func:`predict` row carries: the statement that writes the batch returns the stored one."""


class Prediction(NamedTuple):
    """What :func:`predict` assumes of the rows a batch touches, for :func:`plan_batch`: the records its
    versioned puts expect (``UNREAD`` creation times), the items its acks hold, the items it dequeues (as
    present: the write says which were)."""

    records: dict[Key, RecordRow]
    items: dict[Key, HeldRow]
    dequeued: list[Key]


def predict(calls: Sequence[BatchCall]) -> Prediction | None:
    """The rows a batch touches as its own operations expect them, so that it can be planned and written
    without reading them first (one statement that checks each assumption under the rows' locks and writes
    nothing unless all hold). ``None`` where the operations do not say enough: a put that does not name the
    version it expects, a delete, or a queue item that more than one operation touches."""
    records: dict[Key, RecordRow] = {}
    absent: set[Key] = set()
    items: dict[Key, HeldRow] = {}
    enqueued: set[Key] = set()
    dequeued: list[Key] = []
    for call in calls:
        for op in call.ops:
            if isinstance(op, Put):
                if op.expected_version is None:
                    return None
                key = (op.kind, op.id)
                if key in records or key in absent:
                    continue  # the plan follows the versions from the first one
                if op.expected_version:
                    records[key] = RecordRow(op.expected_version, UNREAD)
                else:
                    absent.add(key)
            elif isinstance(op, (Append, Wake)):
                continue
            elif isinstance(op, Delete):
                return None
            else:
                key = (op.lease.queue, op.lease.id) if isinstance(op, Ack) else (op.queue, op.id)
                if key in items or key in enqueued:
                    return None
                if isinstance(op, Ack):
                    items[key] = HeldRow(True, op.lease.token, float("inf"))
                elif isinstance(op, Dequeue):
                    items[key] = HeldRow(False, 0, 0.0)
                    dequeued.append(key)
                else:
                    enqueued.add(key)
    return Prediction(records, items, dequeued)
