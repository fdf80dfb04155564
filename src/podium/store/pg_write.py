"""The statements that write one group commit's batch on a connection, for :mod:`podium.store.postgres`
(which owns the pool, the writers and the transaction around them).

Three ways, cheapest first, all with the same outcomes per call as if each call ran alone:

- :meth:`Writer.alone`: a lone versioned put, one statement committed by itself;
- :meth:`Writer.blind`: a batch planned from what its operations expect of its rows
  (:func:`~podium.store.pg_batch.predict`) and written by one statement committed by itself, which checks
  those expectations under the rows' locks and writes nothing unless all hold (``None``: plan it again);
- :meth:`Writer.planned`: inside the caller's transaction, the touched rows read and locked, the batch
  planned from them (:func:`~podium.store.pg_batch.plan_batch`) and written with array statements; and
  :meth:`Writer.each`, call by call in savepoints, for what the plan does not reduce.
"""

from __future__ import annotations

import asyncio
import math
import zlib
from collections.abc import Sequence
from typing import Any

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
from podium.store.pg_batch import BatchCall, Fallback, HeldRow, RecordRow, plan_batch, predict
from podium.store.pg_sql import (
    _APPEND_ONE,
    _AT_ITEM,
    _AT_RECORD,
    _BLIND_WRITE,
    _ENQUEUE,
    _ENQUEUE_LEASED,
    _HELD,
    _INSERT_HISTORY,
    _INSERT_HISTORY_ONE,
    _INSERT_ITEMS,
    _LOCK_ROWS,
    _PUT_ANY,
    _PUT_NEW,
    _PUT_VERSION,
    _PUT_VERSION_ALONE,
    _VERSION,
    _VERSION_LOCKED,
    _WRITE_ROWS,
    _WRITE_ROWS_HISTORY,
    BLIND_MISS,
)

__all__ = ["Call", "Writer", "columns", "packed", "subject_lock"]


class Call:
    """One pending :meth:`PostgresStore.apply`: its operations, their encodings and its future."""

    __slots__ = ("blobs", "durable", "future", "now", "ops")

    def __init__(self, ops: Sequence[Op], blobs: list[str | None], now: float, durable: bool):
        self.ops, self.blobs, self.now, self.durable = ops, blobs, now, durable
        self.future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()


class Writer:
    """Writes batches for one store: its notification ``channel``, the advisory ``lock_class`` of its history
    subjects, and ``miss``, the error class of :data:`~podium.store.pg_sql._BLIND_WRITE`'s failed check."""

    def __init__(self, channel: str, lock_class: int, miss: type[BaseException]) -> None:
        self.channel, self.lock_class, self.miss = channel, lock_class, miss

    async def blind(self, conn: Any, batch: list[Call]) -> list[Any] | None:
        """The batch planned from what its operations expect of its rows (:func:`pg_batch.predict`) and
        written by one statement that commits by itself if the rows are as expected: its outcomes. ``None``:
        the operations do not say enough, or the rows were otherwise (nothing was written; plan it again
        from the rows as read)."""
        calls = [BatchCall(c.ops, c.blobs, c.now) for c in batch]
        guess = predict(calls)
        if guess is None:
            return None
        try:
            plan = plan_batch(calls, guess.records, guess.items)
        except Fallback:
            return None
        if any(isinstance(outcome, BaseException) for outcome in plan.outcomes):
            # A call refused on what another call of the batch expects: the statement checks only the rows
            # the batch writes, so a refusal would rest on an expectation nothing checks.
            return None
        # Every call went through: each row expected is written (an update, an insert, an item deleted),
        # and so checked by the statement.
        updated = sorted(r[:2] for r in plan.record_updates)
        expected = [guess.records[key].version for key in updated]
        acks = {
            (op.lease.queue, op.lease.id): (op.lease.token, call.now)
            for call in batch
            for op in call.ops
            if type(op) is Ack
        }
        held = sorted(plan.queue_deletes)
        updates = [(r[0], r[1], r[2], r[3], r[4], r[5], r[7]) for r in plan.record_updates]
        items = [
            (i.key[0], i.key[1], i.priority, i.payload, i.leased, i.due_at, i.owner, i.enqueued_at)
            for i in plan.queue_inserts
        ]
        history = [row for _, _, row in plan.appends]
        try:
            rows = await conn.fetch(
                _BLIND_WRITE,
                *columns(updated, 2),
                expected,
                *columns(held, 2),
                [acks[key][0] if key in acks else None for key in held],
                [acks[key][1] if key in acks else None for key in held],
                *columns(updates, 7),
                *columns(plan.record_inserts, 8),
                *columns(items, 8),
                *columns(history, 5),
                self.lock_class,
                sorted({subject_lock(row[0]) for row in history}),
                self.channel,
                packed(plan.queues_to_notify),
                any(call.durable for call in batch),
            )
        except self.miss as exc:
            if BLIND_MISS not in str(exc):
                raise
            return None
        created = {(r[1], r[2]): r[4] for r in rows if r[0] == 0}
        deleted = {(r[1], r[2]) for r in rows if r[0] == 3}
        for call, result in zip(batch, plan.outcomes, strict=True):
            assert isinstance(result, list)  # every call went through (above)
            for index, value in enumerate(result):
                if type(value) is Record and math.isnan(value.created_at):  # pg_batch.UNREAD: as stored
                    result[index] = value._replace(created_at=created[(value.kind, value.id)])
            if guess.dequeued:
                for index, op in enumerate(call.ops):
                    if type(op) is Dequeue:
                        result[index] = (op.queue, op.id) in deleted
        plan.fill_tokens({(r[1], r[2]): r[3] for r in rows if r[0] == 1})
        plan.fill_seqs([r[3] for r in rows if r[0] == 2])
        return plan.outcomes

    async def alone(self, conn: Any, call: Call) -> list[Any] | ConflictError:
        """A lone versioned :class:`Put`, committed by its own statement (asynchronously when the call is
        not durable): the call's results, or its version conflict (returned, not raised)."""
        op = call.ops[0]
        assert isinstance(op, Put)
        row = await conn.fetchrow(
            _PUT_VERSION_ALONE,
            op.kind,
            op.id,
            op.status,
            op.group,
            call.blobs[0],
            call.now,
            op.expected_version,
            call.durable,
        )
        if row is None:
            return ConflictError(
                op.kind, op.id, op.expected_version, await conn.fetchval(_VERSION, op.kind, op.id)
            )
        return [Record(op.kind, op.id, row[0], op.data, op.status, op.group, row[1], call.now)]

    async def each(self, conn: Any, batch: list[Call]) -> tuple[list[Any], set[str]]:
        """Each call in turn, inside its own savepoint when there are several; the wake-ups still to send."""
        outcomes: list[Any] = []
        queues: set[str] = set()
        single = len(batch) == 1
        for call in batch:
            if not single:
                await conn.execute("SAVEPOINT call")
            try:
                results = await self.run_call(conn, call)
            except (ConflictError, LeaseLostError) as refused:
                await conn.execute(
                    "ROLLBACK" if single else "ROLLBACK TO SAVEPOINT call; RELEASE SAVEPOINT call"
                )
                outcomes.append(refused)
            else:
                if not single:
                    await conn.execute("RELEASE SAVEPOINT call")
                outcomes.append(results)
                if not any(type(op) is Append for op in call.ops):  # else its history insert sent them
                    queues |= notify_queues(call.ops)
        return outcomes, queues

    async def run_call(self, conn: Any, call: Call) -> list[Any]:
        """One call's operations, its history lines last: their ``seq`` values are drawn under the subjects'
        locks, after everything else this transaction waits for (see the module docstring)."""
        results: list[Any] = []
        appends: list[int] = []
        for index, (op, blob) in enumerate(zip(call.ops, call.blobs, strict=True)):
            if type(op) is Append:
                appends.append(index)
                results.append(None)
            else:
                results.append(await self.op(conn, op, blob, call.now))
        entries = [(index, op) for index in appends if isinstance(op := call.ops[index], Append)]
        locks: list[int] | None = sorted({subject_lock(op.subject_id) for _, op in entries})
        for index, op in entries:
            args = (op.subject_id, op.event, op.status, call.now, call.blobs[index])
            if locks is None:
                seq = await conn.fetchval(_APPEND_ONE, *args)
            else:  # the first line takes the locks and sends the call's wake-ups
                wake = packed(notify_queues(call.ops))
                seq = await conn.fetchval(
                    _INSERT_HISTORY_ONE, *args, self.lock_class, locks, self.channel, wake
                )
                locks = None  # taken, for the rest of the transaction
            results[index] = HistoryEntry(seq, op.subject_id, op.event, op.status, call.now, op.data or {})
        return results

    async def planned(self, conn: Any, batch: list[Call]) -> tuple[list[Any], set[str]]:
        """Read and lock the touched rows, plan the batch, write its net effect in a few array statements."""
        rec_keys: dict[tuple[str, str], None] = {}
        q_keys: dict[tuple[str, str], None] = {}
        for call in batch:
            for op in call.ops:
                if isinstance(op, (Put, Delete)):
                    rec_keys[(op.kind, op.id)] = None
                elif isinstance(op, (Enqueue, Dequeue)):
                    q_keys[(op.queue, op.id)] = None
                elif isinstance(op, Ack):
                    q_keys[(op.lease.queue, op.lease.id)] = None
        records: dict[tuple[str, str], RecordRow] = {}
        items: dict[tuple[str, str], HeldRow] = {}
        where: dict[tuple[bool, str, str], Any] = {}  # (is an item, key, key) -> the locked row's ctid
        if rec_keys or q_keys:
            rec_cols, q_cols = columns(list(rec_keys), 2), columns(list(q_keys), 2)
            for row in await conn.fetch(_LOCK_ROWS, *rec_cols, *q_cols):
                if row[0]:
                    items[(row[1], row[2])] = HeldRow(bool(row[3]), row[5], row[4])
                else:
                    records[(row[1], row[2])] = RecordRow(row[3], row[4])
                where[(row[0], row[1], row[2])] = row[6]
        plan = plan_batch([BatchCall(c.ops, c.blobs, c.now) for c in batch], records, items)
        item_rows = [
            (i.key[0], i.key[1], i.priority, i.payload, i.leased, i.due_at, i.owner, i.enqueued_at)
            for i in plan.queue_inserts
        ]
        # an item deleted and inserted again: the insert after the delete, in a statement of its own
        reinserted = bool(plan.queue_deletes) and not set(plan.queue_deletes).isdisjoint(
            i.key for i in plan.queue_inserts
        )
        inserted: list[Any] = []
        if (
            plan.record_deletes
            or plan.record_updates
            or plan.record_inserts
            or plan.queue_deletes
            or (item_rows and not reinserted)
        ):
            updates = [(where[(False, r[0], r[1])], *r[2:]) for r in plan.record_updates]
            args = [
                [where[(False, *key)] for key in plan.record_deletes],
                *columns(updates, 7),
                *columns(plan.record_inserts, 8),
                [where[(True, *key)] for key in plan.queue_deletes],
                *columns([] if reinserted else item_rows, 8),
            ]
            if plan.appends and not reinserted:  # the history lines in the same statement
                rows = [row for _, _, row in plan.appends]
                locks = sorted({subject_lock(row[0]) for row in rows})
                wake = packed(plan.queues_to_notify)
                out = await conn.fetch(
                    _WRITE_ROWS_HISTORY, *args, *columns(rows, 5), self.lock_class, locks, self.channel, wake
                )
                if sum(row[3] for row in out if row[0] == 0) != len(plan.record_inserts):
                    raise Fallback("another instance created one of these records first")
                if len(tokens := [row for row in out if row[0] == 1]) != len(item_rows):
                    raise Fallback("another instance enqueued one of these items first")
                if item_rows:
                    plan.fill_tokens({(r[1], r[2]): r[3] for r in tokens})
                plan.fill_seqs([row[3] for row in out if row[0] == 2])
                return plan.outcomes, set()  # the statement sent the wake-ups
            written = await conn.fetch(_WRITE_ROWS, *args)
            inserted = [row for row in written if row[0] is not None]
            if sum(row[2] for row in written if row[0] is None) != len(plan.record_inserts):
                raise Fallback("another instance created one of these records first")
        if reinserted and item_rows:
            inserted = await conn.fetch(_INSERT_ITEMS, *columns(item_rows, 8))
        if item_rows:
            if len(inserted) != len(item_rows):
                raise Fallback("another instance enqueued one of these items first")
            plan.fill_tokens({(r[0], r[1]): r[2] for r in inserted})
        if plan.appends:
            rows = [row for _, _, row in plan.appends]
            locks = sorted({subject_lock(row[0]) for row in rows})
            wake = packed(plan.queues_to_notify)
            seqs = await conn.fetch(
                _INSERT_HISTORY, *columns(rows, 5), self.lock_class, locks, self.channel, wake
            )
            plan.fill_seqs([r[0] for r in seqs])
            return plan.outcomes, set()  # the insert sent the wake-ups
        return plan.outcomes, plan.queues_to_notify

    async def op(self, conn: Any, op: Op, blob: str | None, now: float) -> Any:
        """One operation other than an :class:`Append` (:meth:`run_call` writes those)."""
        if isinstance(op, Put):
            if op.expected_version is None:
                row = await conn.fetchrow(_PUT_ANY, op.kind, op.id, op.status, op.group, blob, now)
            elif op.expected_version == 0:
                row = await conn.fetchrow(_PUT_NEW, op.kind, op.id, op.status, op.group, blob, now)
            else:
                row = await conn.fetchrow(
                    _PUT_VERSION, op.kind, op.id, op.status, op.group, blob, now, op.expected_version
                )
            if row is None:
                found = await conn.fetchval(_VERSION, op.kind, op.id)
                raise ConflictError(op.kind, op.id, op.expected_version, found)
            return Record(op.kind, op.id, row[0], op.data, op.status, op.group, row[1], now)
        if isinstance(op, Enqueue):
            if op.lease_owner:
                token = await conn.fetchval(
                    _ENQUEUE_LEASED,
                    op.queue,
                    op.id,
                    op.priority,
                    blob,
                    now + op.lease_s,
                    op.lease_owner,
                    now,
                )
                if token is None:
                    return None
                return Lease(
                    op.queue,
                    op.id,
                    op.payload or {},
                    op.priority,
                    1,
                    token,
                    op.lease_owner,
                    now + op.lease_s,
                    now,
                )
            added = await conn.fetchval(_ENQUEUE, op.queue, op.id, op.priority, blob, now + op.delay_s, now)
            return added is not None
        if isinstance(op, Ack):
            lease = op.lease
            gone = await conn.fetchval(
                f"DELETE FROM queue WHERE {_HELD} RETURNING 1", lease.queue, lease.id, lease.token, now
            )
            if gone is None:
                raise LeaseLostError(
                    f"lease on {lease.queue}/{lease.id} (token {lease.token}) is no longer held"
                )
            return None
        if isinstance(op, Dequeue):
            gone = await conn.fetchval(f"DELETE FROM queue WHERE {_AT_ITEM} RETURNING 1", op.queue, op.id)
            return gone is not None
        if isinstance(op, Wake):
            return None
        assert isinstance(op, Delete)
        if op.expected_version is not None:
            actual = await conn.fetchval(_VERSION_LOCKED, op.kind, op.id) or 0
            if actual != op.expected_version:
                raise ConflictError(op.kind, op.id, op.expected_version, actual or None)
        gone = await conn.fetchval(f"DELETE FROM records WHERE {_AT_RECORD} RETURNING 1", op.kind, op.id)
        return gone is not None


_PAYLOAD_BYTES = 7000
"""A notification's payload holds several names, one a line, up to this size (PostgreSQL's limit is 8000)."""


def packed(names: set[str]) -> list[str]:
    """The payloads that carry ``names``: one notification per few dozen names rather than one each (every
    listening instance is signalled and reads each notification)."""
    out: list[str] = []
    chunk: list[str] = []
    size = 0
    for name in sorted(names):
        if chunk and size + len(name) + 1 > _PAYLOAD_BYTES:
            out.append("\n".join(chunk))
            chunk, size = [], 0
        chunk.append(name)
        size += len(name.encode()) + 1
    if chunk:
        out.append("\n".join(chunk))
    return out


def subject_lock(subject: str) -> int:
    """The advisory lock key (an int4) under which a history subject's ``seq`` values are drawn."""
    return zlib.crc32(subject.encode()) - 2**31


def columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as ``width`` column lists (the arrays an ``unnest`` statement takes)."""
    return [[row[i] for row in rows] for i in range(width)]
