"""The SQLite store's write operations: one :class:`~podium.store.base.Op` as SQL, in the open transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
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
    dump_json,
)

__all__ = ["run_op"]

_dumps = dump_json

Touched = list[
    tuple[tuple[str, str], "tuple[str, str, int, str | None, str | None, str, float, float] | None"]
]


def run_op(
    conn: sqlite3.Connection, op: Op, now: float, touched: Touched, next_value: Callable[[str], int]
) -> Any:
    """Run ``op``; what it writes to a record goes to ``touched`` (its key and row, ``None`` once deleted);
    ``next_value`` gives the next value of a counter."""
    if isinstance(op, Put):
        text = _dumps(op.data)
        if op.expected_version is None:
            row = conn.execute(
                "INSERT INTO records(kind, id, version, status, grp, data, created_at, updated_at)"
                " VALUES (?,?,1,?,?,?,?,?) ON CONFLICT(kind, id) DO UPDATE SET version = version + 1,"
                " status = excluded.status, grp = excluded.grp, data = excluded.data,"
                " updated_at = excluded.updated_at RETURNING version, created_at",
                (op.kind, op.id, op.status, op.group, text, now, now),
            ).fetchone()
        elif op.expected_version == 0:
            row = conn.execute(
                "INSERT INTO records(kind, id, version, status, grp, data, created_at, updated_at)"
                " VALUES (?,?,1,?,?,?,?,?) ON CONFLICT(kind, id) DO NOTHING RETURNING version, created_at",
                (op.kind, op.id, op.status, op.group, text, now, now),
            ).fetchone()
        else:
            # The group seldom changes: an UPDATE that does not set it leaves its index entry alone (SQLite
            # rewrites the index entries of every column an UPDATE sets, even to the same value: a delete
            # and an insert in that index, and its page in the WAL). Only a new group takes the second one.
            row = (
                conn.execute(
                    "UPDATE records SET version = version + 1, status = ?, data = ?, updated_at = ?"
                    " WHERE kind = ? AND id = ? AND version = ? AND grp IS ? RETURNING version, created_at",
                    (op.status, text, now, op.kind, op.id, op.expected_version, op.group),
                ).fetchone()
                or conn.execute(
                    "UPDATE records SET version = version + 1, status = ?, grp = ?, data = ?, updated_at = ?"
                    " WHERE kind = ? AND id = ? AND version = ? RETURNING version, created_at",
                    (op.status, op.group, text, now, op.kind, op.id, op.expected_version),
                ).fetchone()
            )
        if row is None:
            found = conn.execute(
                "SELECT version FROM records WHERE kind=? AND id=?", (op.kind, op.id)
            ).fetchone()
            raise ConflictError(op.kind, op.id, op.expected_version, found[0] if found else None)
        # The caller keeps its own object; the store holds the JSON text.
        touched.append(((op.kind, op.id), (op.kind, op.id, row[0], op.status, op.group, text, row[1], now)))
        return Record(op.kind, op.id, row[0], op.data, op.status, op.group, row[1], now)
    if isinstance(op, Delete):
        if op.expected_version is not None:
            row = conn.execute(
                "SELECT version FROM records WHERE kind=? AND id=?", (op.kind, op.id)
            ).fetchone()
            actual = row[0] if row else 0
            if actual != op.expected_version:
                raise ConflictError(op.kind, op.id, op.expected_version, actual or None)
        touched.append(((op.kind, op.id), None))
        return conn.execute("DELETE FROM records WHERE kind=? AND id=?", (op.kind, op.id)).rowcount > 0
    if isinstance(op, Enqueue):
        seq = next_value("seq")
        if op.lease_owner:
            token = next_value("fence")
            cur = conn.execute(
                "INSERT OR IGNORE INTO queue(queue, id, seq, priority, payload, leased, due_at, token, owner,"
                " attempts, enqueued_at) VALUES (?,?,?,?,?,1,?,?,?,1,?)",
                (
                    op.queue,
                    op.id,
                    seq,
                    op.priority,
                    _dumps(op.payload or {}),
                    now + op.lease_s,
                    token,
                    op.lease_owner,
                    now,
                ),
            )
            if cur.rowcount == 0:
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
        cur = conn.execute(
            "INSERT OR IGNORE INTO queue(queue, id, seq, priority, payload, leased, due_at, token, owner,"
            " attempts, enqueued_at) VALUES (?,?,?,?,?,0,?,0,'',0,?)",
            (op.queue, op.id, seq, op.priority, _dumps(op.payload or {}), now + op.delay_s, now),
        )
        return cur.rowcount > 0
    if isinstance(op, Dequeue):
        return conn.execute("DELETE FROM queue WHERE queue=? AND id=?", (op.queue, op.id)).rowcount > 0
    if isinstance(op, Ack):
        lease = op.lease
        cur = conn.execute(
            "DELETE FROM queue WHERE queue=? AND id=? AND leased=1 AND token=? AND due_at>?",
            (lease.queue, lease.id, lease.token, now),
        )
        if cur.rowcount == 0:
            raise LeaseLostError(f"lease on {lease.queue}/{lease.id} (token {lease.token}) is no longer held")
        return None
    if isinstance(op, Wake):
        return None
    assert isinstance(op, Append)
    data = _dumps(op.data or {})
    cur = conn.execute(
        "INSERT INTO history(subject_id, event, status, ts, data) VALUES (?,?,?,?,?)",
        (op.subject_id, op.event, op.status, now, data),
    )
    return HistoryEntry(int(cur.lastrowid or 0), op.subject_id, op.event, op.status, now, op.data or {})
