"""The SQLite backend: podium's embedded default. One file, WAL, durable before a call returns.

All writes run on one dedicated thread that owns the writing connection. Calls that arrive while it is
busy are *group-committed*: the thread runs everything queued in one transaction, each call inside its own
SAVEPOINT (so one call's conflict rolls back only that call), and commits once with
``synchronous=FULL``. Futures resolve only after the commit, so a returned call is on disk, and many
concurrent callers share one fsync. Reads never wait behind a commit's fsync (WAL readers do not wait
for the writer) and see every call that returned before they started: a record by kind and id is read on
the event loop's thread with its own connection (a primary-key lookup costs ~7 us there, ~70 us of CPU
through a thread hop: job status polls are reads of one record); lists, counts and history run on a
reader thread with its own connection.

The schema is created by Alembic on a new file; an existing file whose schema version differs from
:data:`~podium.store.base.SCHEMA_VERSION` refuses to open with the command that migrates it.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from podium.clock import Clock
from podium.errors import ConflictError, LeaseLostError, SchemaMismatchError, StoreError
from podium.store import migrate
from podium.store.base import (
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
    dump_json,
    history_query,
    load_json,
    notify_queues,
    status_filter,
)

__all__ = ["SQLiteStore"]

T = TypeVar("T")


_dumps, _loads = dump_json, load_json

_Call = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop, bool]


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


class SQLiteStore(Store):
    """See the module docstring. ``synchronous`` may be lowered to ``"NORMAL"`` (durable against a
    process crash, not a power cut) where speed matters more."""

    name = "sqlite"

    def __init__(self, path: str | Path, *, clock: Clock | None = None, synchronous: str = "FULL") -> None:
        super().__init__(clock=clock)
        self.path = Path(path)
        self.synchronous = synchronous
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._rconn: sqlite3.Connection | None = None
        self._lconn: sqlite3.Connection | None = None  # point reads on the event loop's thread
        self._pending: builtins.list[_Call] = []
        self._pending_lock = threading.Lock()
        self._scheduled = False
        self._level = synchronous
        self._counters: dict[str, int] = {}
        self._dirty = False
        self._watcher: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._conn is not None:
            return
        found = await asyncio.to_thread(migrate.current_version, self.path)
        if found is None:
            found = await asyncio.to_thread(migrate.create_or_read, self.path, self._has_tables)
            if found is None:
                raise SchemaMismatchError(None, SCHEMA_VERSION, migrate.upgrade_command(self.path))
        if found != SCHEMA_VERSION:
            raise SchemaMismatchError(found, SCHEMA_VERSION, migrate.upgrade_command(self.path))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="podium-sqlite")
        self._conn = await asyncio.get_running_loop().run_in_executor(self._executor, self._connect)
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="podium-sqlite-read")
        self._rconn = await asyncio.get_running_loop().run_in_executor(self._reader, self._connect_reader)
        self._lconn = self._connect_reader(busy_timeout_ms=200)

    def _has_tables(self) -> bool:
        conn = sqlite3.connect(str(self.path))
        try:
            return bool(conn.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0])
        finally:
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _connect_reader(self, busy_timeout_ms: int = 10000) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA query_only=ON")
        conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        return conn

    async def close(self) -> None:
        if self._conn is None or self._executor is None:
            return
        if self._lconn is not None:
            self._lconn.close()
            self._lconn = None
        if self._reader is not None and self._rconn is not None:
            reader, rconn = self._reader, self._rconn
            self._rconn = None
            await asyncio.get_running_loop().run_in_executor(reader, rconn.close)
            reader.shutdown(wait=True)
            self._reader = None
        conn, executor = self._conn, self._executor
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await asyncio.get_running_loop().run_in_executor(executor, self._drain)
        self._conn = None
        await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        executor.shutdown(wait=True)
        self._executor = None

    async def schema_version(self) -> str | None:
        return await asyncio.to_thread(migrate.current_version, self.path)

    # --- the writer thread ----------------------------------------------------------------------

    def _call(self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> asyncio.Future[T]:
        if self._conn is None or self._executor is None:
            raise StoreError("the SQLite store is not open (use `async with store:` or `await store.open()`)")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        with self._pending_lock:
            self._pending.append((fn, fut, loop, durable))
            if not self._scheduled:
                self._scheduled = True
                self._executor.submit(self._drain)
        return fut

    def _drain(self) -> None:
        """Run every queued call in one transaction (a savepoint each), commit once, then resolve."""
        with self._pending_lock:
            batch, self._pending = self._pending, []
            self._scheduled = False
        if not batch:
            return
        conn = self._conn
        assert conn is not None
        outcomes: builtins.list[
            tuple[asyncio.Future[Any], asyncio.AbstractEventLoop, Any, BaseException | None]
        ] = []
        try:
            # A batch of only non-durable writes commits without waiting for the disk; the next durable
            # commit flushes the WAL with it.
            level = self.synchronous if any(call[3] for call in batch) else "NORMAL"
            if level != self._level:
                conn.execute(f"PRAGMA synchronous={level}")
                self._level = level
            conn.execute("BEGIN IMMEDIATE")
            # Counters are read once per transaction (under the write lock, so other processes on the
            # same file cannot interleave) and written back once at the end.
            self._counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
            self._dirty = False
            if len(batch) == 1:
                fn, fut, loop, _ = batch[0]
                try:
                    result = fn(conn)
                except BaseException as exc:
                    conn.execute("ROLLBACK")
                    outcomes.append((fut, loop, None, exc))
                else:
                    outcomes.append((fut, loop, result, None))
            else:
                for fn, fut, loop, _ in batch:
                    conn.execute("SAVEPOINT call")
                    try:
                        result = fn(conn)
                    except BaseException as exc:
                        conn.execute("ROLLBACK TO call")
                        conn.execute("RELEASE call")
                        outcomes.append((fut, loop, None, exc))
                    else:
                        conn.execute("RELEASE call")
                        outcomes.append((fut, loop, result, None))
            if conn.in_transaction:
                if self._dirty:
                    conn.executemany(
                        "INSERT INTO counters(name, value) VALUES (?, ?)"
                        " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                        list(self._counters.items()),
                    )
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = StoreError(f"SQLite commit failed: {exc}")
            outcomes = [(fut, loop, None, failure) for fut, loop, _, _ in outcomes] or [
                (fut, loop, None, failure) for _, fut, loop, _ in batch
            ]
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[1], []).append(outcome)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, items)
            except RuntimeError:  # the loop is closed; nobody is waiting any more
                pass

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read on the reader thread (its own connection, outside the writer's transactions)."""
        if self._rconn is None or self._reader is None:
            raise StoreError("the SQLite store is not open (use `async with store:` or `await store.open()`)")
        conn = self._rconn
        return await asyncio.get_running_loop().run_in_executor(self._reader, fn, conn)

    # --- apply ----------------------------------------------------------------------------------

    async def apply(self, *ops: Op, durable: bool = True) -> builtins.list[Any]:
        now = self.clock.now()
        results = await self._call(lambda conn: [self._op(conn, op, now) for op in ops], durable=durable)
        self._notify(notify_queues(ops))
        return results

    def _op(self, conn: sqlite3.Connection, op: Op, now: float) -> Any:
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
                row = conn.execute(
                    "UPDATE records SET version = version + 1, status = ?, grp = ?, data = ?, updated_at = ?"
                    " WHERE kind = ? AND id = ? AND version = ? RETURNING version, created_at",
                    (op.status, op.group, text, now, op.kind, op.id, op.expected_version),
                ).fetchone()
            if row is None:
                found = conn.execute(
                    "SELECT version FROM records WHERE kind=? AND id=?", (op.kind, op.id)
                ).fetchone()
                raise ConflictError(op.kind, op.id, op.expected_version, found[0] if found else None)
            # The caller keeps its own object; the store holds the JSON text.
            return Record(op.kind, op.id, row[0], op.data, op.status, op.group, row[1], now)
        if isinstance(op, Delete):
            if op.expected_version is not None:
                row = conn.execute(
                    "SELECT version FROM records WHERE kind=? AND id=?", (op.kind, op.id)
                ).fetchone()
                actual = row[0] if row else 0
                if actual != op.expected_version:
                    raise ConflictError(op.kind, op.id, op.expected_version, actual or None)
            return conn.execute("DELETE FROM records WHERE kind=? AND id=?", (op.kind, op.id)).rowcount > 0
        if isinstance(op, Enqueue):
            seq = self._next("seq")
            if op.lease_owner:
                token = self._next("fence")
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
                raise LeaseLostError(
                    f"lease on {lease.queue}/{lease.id} (token {lease.token}) is no longer held"
                )
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

    def _next(self, name: str) -> int:
        """The next value of a counter (fence tokens, queue order); writer thread only, in a batch."""
        value = self._counters.get(name, 0) + 1
        self._counters[name] = value
        self._dirty = True
        return value

    # --- records --------------------------------------------------------------------------------

    @staticmethod
    def _record(row: Sequence[Any]) -> Record:
        return Record(row[0], row[1], row[2], _loads(row[5]), row[3], row[4], row[6], row[7])

    async def get(self, kind: str, id: str) -> Record | None:
        def run(conn: sqlite3.Connection) -> Record | None:
            row = conn.execute(
                "SELECT kind, id, version, status, grp, data, created_at, updated_at FROM records"
                " WHERE kind=? AND id=?",
                (kind, id),
            ).fetchone()
            return self._record(row) if row else None

        conn = self._lconn
        if conn is not None:
            try:
                return run(conn)
            except sqlite3.OperationalError:
                pass  # busy (another process holds the file a moment): read on the reader thread
        return await self._read(run)

    @staticmethod
    def _where(kind: str, status: str | Sequence[str] | None, group: str | None) -> tuple[str, list[Any]]:
        sql, args = "kind=?", [kind]
        statuses = status_filter(status)
        if statuses is not None:
            sql += f" AND status IN ({','.join('?' * len(statuses))})"
            args.extend(statuses)
        if group is not None:
            sql += " AND grp=?"
            args.append(group)
        return sql, args

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
        sql, args = self._where(kind, status, group)
        if after is not None:
            sql += " AND id < ?" if descending else " AND id > ?"
            args.append(after)
        query = (
            "SELECT kind, id, version, status, grp, data, created_at, updated_at FROM records WHERE "
            f"{sql} ORDER BY id {'DESC' if descending else 'ASC'} LIMIT ?"
        )
        args.append(limit)
        return await self._read(lambda conn: [self._record(r) for r in conn.execute(query, args)])

    async def count(
        self, kind: str, *, status: str | Sequence[str] | None = None, group: str | None = None
    ) -> int:
        sql, args = self._where(kind, status, group)
        return await self._read(
            lambda conn: int(conn.execute(f"SELECT count(*) FROM records WHERE {sql}", args).fetchone()[0])
        )

    # --- queues ---------------------------------------------------------------------------------

    async def take_now(
        self, queues: Sequence[str], *, owner: str, lease_s: float, limit: int
    ) -> builtins.list[Lease]:
        now = self.clock.now()

        def run(conn: sqlite3.Connection) -> builtins.list[Lease]:
            # One ordered index scan per queue (stops at `limit`), merged here: SQLite cannot merge
            # ordered scans over several queues itself and would sort every due row instead.
            rows: builtins.list[Any] = []
            for name in dict.fromkeys(queues):
                rows.extend(
                    conn.execute(
                        "SELECT queue, id, payload, priority, attempts, enqueued_at, seq FROM queue"
                        " INDEXED BY ix_queue_order WHERE queue = ? AND due_at <= ?"
                        " ORDER BY priority DESC, seq ASC LIMIT ?",
                        (name, now, limit),
                    )
                )
            if len(queues) > 1:
                rows.sort(key=lambda r: (-r[3], r[6]))
                del rows[limit:]
            out = []
            for queue, id, payload, priority, attempts, enqueued_at, _ in rows:
                token = self._next("fence")
                conn.execute(
                    "UPDATE queue SET leased=1, token=?, owner=?, due_at=?, attempts=attempts+1"
                    " WHERE queue=? AND id=?",
                    (token, owner, now + lease_s, queue, id),
                )
                out.append(
                    Lease(
                        queue,
                        id,
                        _loads(payload),
                        priority,
                        attempts + 1,
                        token,
                        owner,
                        now + lease_s,
                        enqueued_at,
                    )
                )
            return out

        # A take that a power cut loses only offers the item again: no need to wait for the disk.
        return await self._call(run, durable=False)

    CROSS_PROCESS_POLL_S = 0.2
    """How often a process with waiting takers checks whether another process committed to the file
    (``PRAGMA data_version``: one cheap read, no scan); waiters wake only when one did."""

    async def take(
        self,
        queue: str | Sequence[str],
        *,
        owner: str,
        lease_s: float,
        limit: int = 1,
        wait_s: float = 0.0,
    ) -> builtins.list[Lease]:
        """As :meth:`Store.take`; a waiting taker is also woken by another process's commit to the file
        (several instances on one SQLite file)."""
        if wait_s > 0 and self._watcher is None and self._conn is not None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch_other_writers())
        return await super().take(queue, owner=owner, lease_s=lease_s, limit=limit, wait_s=wait_s)

    async def _watch_other_writers(self) -> None:
        """While takers wait, wake them when another connection committed (``data_version`` changed)."""
        try:
            seen = await self._call(_data_version, durable=False)
            while self._conn is not None and self._waiters:
                await self.clock.sleep(self.CROSS_PROCESS_POLL_S)
                if self._conn is None:
                    return
                now = await self._call(_data_version, durable=False)
                if now != seen:
                    seen = now
                    self._notify(builtins.list(self._waiters))
        except StoreError:
            return  # closed meanwhile
        finally:
            self._watcher = None

    async def next_due(self, queues: Sequence[str]) -> float | None:
        marks = ",".join("?" * len(queues))
        row = await self._call(
            lambda conn: conn.execute(
                f"SELECT min(due_at) FROM queue WHERE queue IN ({marks})", queues
            ).fetchone()
        )
        return float(row[0]) if row and row[0] is not None else None

    def _held_update(self, lease: Lease, sql: str, args: tuple[Any, ...], now: float) -> Callable[..., Any]:
        def run(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                f"UPDATE queue SET {sql} WHERE queue=? AND id=? AND leased=1 AND token=? AND due_at>?",
                (*args, lease.queue, lease.id, lease.token, now),
            )
            if cur.rowcount == 0:
                raise LeaseLostError(
                    f"lease on {lease.queue}/{lease.id} (token {lease.token}) is no longer held"
                )

        return run

    async def extend(self, lease: Lease, lease_s: float) -> Lease:
        now = self.clock.now()
        await self._call(self._held_update(lease, "due_at=?", (now + lease_s,), now))
        return Lease(
            lease.queue,
            lease.id,
            lease.payload,
            lease.priority,
            lease.attempts,
            lease.token,
            lease.owner,
            now + lease_s,
            lease.enqueued_at,
        )

    async def nack(self, lease: Lease, *, delay_s: float = 0.0) -> None:
        now = self.clock.now()
        await self._call(self._held_update(lease, "leased=0, owner='', due_at=?", (now + delay_s,), now))
        self._notify([lease.queue])

    async def queue_depth(self, queue: str) -> dict[str, int]:
        now = self.clock.now()

        def run(conn: sqlite3.Connection) -> dict[str, int]:
            depth = {"ready": 0, "delayed": 0, "leased": 0}
            for leased, due_at in conn.execute("SELECT leased, due_at FROM queue WHERE queue=?", (queue,)):
                if due_at <= now:
                    depth["ready"] += 1
                else:
                    depth["leased" if leased else "delayed"] += 1
            return depth

        return await self._call(run)

    # --- locks ----------------------------------------------------------------------------------

    async def acquire_lock(self, name: str, owner: str, *, ttl_s: float) -> int | None:
        now = self.clock.now()

        def run(conn: sqlite3.Connection) -> int | None:
            row = conn.execute("SELECT owner, expires_at FROM locks WHERE name=?", (name,)).fetchone()
            if row is not None and row[1] > now and row[0] != owner:
                return None
            token = self._next("fence")
            conn.execute(
                "INSERT OR REPLACE INTO locks(name, owner, token, expires_at) VALUES (?,?,?,?)",
                (name, owner, token, now + ttl_s),
            )
            return token

        return await self._call(run)

    async def refresh_lock(self, name: str, owner: str, token: int, *, ttl_s: float) -> bool:
        now = self.clock.now()
        return await self._call(
            lambda conn: (
                conn.execute(
                    "UPDATE locks SET expires_at=? WHERE name=? AND owner=? AND token=? AND expires_at>?",
                    (now + ttl_s, name, owner, token, now),
                ).rowcount
                > 0
            )
        )

    async def release_lock(self, name: str, owner: str, token: int) -> bool:
        return await self._call(
            lambda conn: (
                conn.execute(
                    "DELETE FROM locks WHERE name=? AND owner=? AND token=?", (name, owner, token)
                ).rowcount
                > 0
            )
        )

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
        query, args = history_query(
            lambda _: "?",
            subject_id,
            event=event,
            status=status,
            since=since,
            until=until,
            after_seq=after_seq,
            limit=limit,
        )
        return await self._read(
            lambda conn: [
                HistoryEntry(r[0], r[1], r[2], r[3], r[4], _loads(r[5])) for r in conn.execute(query, args)
            ]
        )


def _resolve(items: builtins.list[tuple[asyncio.Future[Any], Any, Any, BaseException | None]]) -> None:
    for fut, _, result, exc in items:
        if fut.done():
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
