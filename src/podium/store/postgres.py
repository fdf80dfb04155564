"""The PostgreSQL backend (asyncpg): several podium instances on one database.

- **Schema**: the SQLite schema, created and migrated by Alembic (:mod:`podium.store.pg_admin`), plus two
  sequences for fencing tokens and queue order (so concurrent writers never wait on one counters row).
- **apply** is one transaction. Calls that arrive while a writer commits are *group-committed*: the
  writer runs all of them next in one transaction (planned into a few array statements, or each inside its
  own SAVEPOINT, so one call's conflict rolls back only that call), and commits once. At low load each call
  is its own transaction; the batching starts exactly when commits queue up. One writer runs at a time
  (more writers at moderate load only split the batches into more transactions; with several instances
  each sees a part of the load, and the batches were that much smaller); another starts when
  :data:`_SPLIT_AT` calls per running writer wait, or when a call has waited :data:`_STUCK_S` (so a writer
  blocked on another instance's lock holds up no unrelated write for longer).
- **Batches written without a read**: where every put of a batch names the version it expects and each queue
  item is touched once (:func:`~podium.store.pg_batch.predict`), the batch is planned from those
  expectations and written by one statement that commits by itself (:data:`~podium.store.pg_sql._BLIND_WRITE`:
  it locks the rows, checks them and every write's count, and writes nothing unless all hold): one round
  trip instead of BEGIN, the read of the rows, the write and COMMIT. When the rows are otherwise (another
  instance moved one on), the batch is planned again from the rows as read, as before.
- **Queues** are taken with ``FOR UPDATE SKIP LOCKED`` in one statement: concurrent takers, in this
  process or others, never wait on each other nor get the same item.
- **Wake-ups**: each commit that makes items available sends ``NOTIFY`` (delivered at commit) on the
  store's channel, payload the queue name; every instance LISTENs on one dedicated connection and wakes
  its waiting takers at once -- no polling loop.
- **History order**: a job's history lines are numbered (``seq``) in the order their transactions commit,
  whichever instances write them, so a reader that has seen line ``n`` of a subject never sees a line
  below ``n`` of it appear later. Each transaction draws its history ``seq`` values last (after its other
  writes) under a transaction-level advisory lock per subject (:func:`subject_lock`), held until it
  commits: a second writer on the same subject draws its numbers after the first has committed.
- **Time** comes from the injected clock: every timestamp is a parameter, never the server's ``now()``.

``durable=False`` writes (and takes) commit with ``synchronous_commit = off``: visible and atomic at once,
lost only in a server crash within a fraction of a second, which recovery redoes.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any

from podium.clock import Clock
from podium.errors import LeaseLostError, SchemaMismatchError, StoreError
from podium.store import pg_admin
from podium.store.base import (
    SCHEMA_VERSION,
    Append,
    Enqueue,
    Fetch,
    HistoryEntry,
    Lease,
    Op,
    Put,
    Record,
    Store,
    dump_json,
    history_query,
    load_json,
    notify_queues,
    status_filter,
)
from podium.store.pg_batch import Fallback
from podium.store.pg_sql import (
    _GET_MANY,
    _GET_ONE,
    _HELD,
    _NEXT_DUE,
    _NOTIFY,
    _RECORD_COLUMNS,
    _TAKE_MANY,
    _TAKE_MANY_FETCH,
    _TAKE_MANY_FETCH_GROUP,
    _TAKE_ONE,
    _TAKE_ONE_FETCH,
    _TAKE_ONE_FETCH_GROUP,
)
from podium.store.pg_write import Call, Writer, packed, subject_lock

__all__ = ["PostgresStore", "subject_lock"]

log = logging.getLogger("podium.store")

_dumps, _loads = dump_json, load_json
_EMPTY = "{}"

_ATTEMPTS = 3
_PLAN_FROM_OPS = 4
_SPLIT_AT = 32
"""Calls waiting per running writer from which :meth:`PostgresStore.apply` starts another writer. On
``bench/bench_instances.py`` one writer batching whatever arrives while it commits made 0.16-0.19 commits
per job with one instance and 0.35-0.47 with three, against 0.42-0.53 and 0.53-0.74 with a writer per
call up to the pool's limit."""
_SPARES = 2
"""Pool connections the store keeps back between statements, lent without asyncpg's pool machinery
(acquire and release cost ~31 us of client CPU a statement, as much as half a statement's own cost)."""
_STUCK_S = 0.05
"""A call waiting this long for a writer gets one of its own (while the pool's limit allows)."""
_BEGIN = "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan"
"""A group commit's transaction plans its statements once per connection (generic plans), in the round trip
of its BEGIN (the pool's connections are set so as well, for the statements that commit by themselves: the
batch written without a read, a lone put, a take; this keeps it where a pooling proxy drops connection
settings). PostgreSQL's default re-planned the batch statements (arrays of keys and rows) for every
execution, which cost more than running them: ``bench/bench_pg_batch.py``, PostgreSQL CPU per call, batches
of 1 / 4 / 16: 1.33-1.60 / 0.50-0.55 / 0.154-0.158 ms re-planned, 0.93-1.07 / 0.32-0.37 / 0.133-0.138 ms with
generic plans. Every statement a writer sends finds its rows by primary key or ctid whatever its plan
(``tests/conformance/test_postgres.py`` checks the generic plans); listings and history pages
(:meth:`PostgresStore._fetch_sorted`) keep PostgreSQL's choice."""


class PostgresStore(Store):
    """See the module docstring. ``url``: ``postgresql://user@host:port/db`` with podium's options
    ``?schema=NAME&pool_size=N`` (:mod:`podium.store.pg_admin`); keywords override them.
    ``group_commit=False`` gives every call its own transaction and connection (for comparison)."""

    name = "postgres"
    fetches_in_take = True

    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        schema: str | None = None,
        pool_size: int | None = None,
        group_commit: bool = True,
    ) -> None:
        super().__init__(clock=clock)
        target = pg_admin.parse_url(url)
        self.url = url
        self.target = target._replace(schema=schema or target.schema, pool_size=pool_size or target.pool_size)
        self.channel = f"podium_{self.target.schema or 'public'}"[:63]
        self.lock_class = subject_lock(self.channel)  # the advisory locks of this store's history subjects
        self._pool: Any = None
        self._listener: Any = None
        self._pending: deque[Call] = deque()
        self._writers = 0
        self._valve: asyncio.TimerHandle | None = None  # see _unstick
        self._tasks: set[asyncio.Task[None]] = set()
        self._relisten_task: asyncio.Task[None] | None = None
        self._own_pids: set[int] = set()  # server pids of this store's pool connections
        self._spares: builtins.list[Any] = []  # pool connections kept back between statements (_borrow)
        self._acquiring = 0  # borrowers waiting on the pool
        self._reads_out = 0  # gets sent and not back (see get)
        self._gets: builtins.list[tuple[tuple[str, str], asyncio.Future[Record | None]]] = []
        # Writers (one, more only for a backlog: see apply) leave connections free for takes and reads.
        self._max_writers = max(1, self.target.pool_size - 2)
        self.group_commit = group_commit
        self._errors: tuple[type[BaseException], ...] = ()
        self._retry: tuple[type[BaseException], ...] = ()
        self._writer = Writer(self.channel, self.lock_class, Exception)  # its error class set by open

    # --- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        asyncpg = pg_admin.import_asyncpg()
        self._errors = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
        self._retry = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
        self._writer.miss = asyncpg.InvalidTextRepresentationError  # _BLIND_WRITE's failed check
        conn = await pg_admin.connect(self.target, create_schema=True)
        try:
            found = await pg_admin.current_version(conn)
            if found is None:
                # Instances starting together on a new schema: one creates it, the others wait for it.
                lock = f"podium-migrate:{self.target.schema or 'public'}"
                await conn.execute("SELECT pg_advisory_lock(hashtext($1))", lock)
                try:
                    found = await pg_admin.current_version(conn)
                    if found is None:
                        if await pg_admin.has_tables(conn):
                            raise SchemaMismatchError(
                                None, SCHEMA_VERSION, pg_admin.upgrade_command(self.url)
                            )
                        await asyncio.to_thread(pg_admin.upgrade, self._target_url())
                        found = await pg_admin.current_version(conn)
                finally:
                    await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", lock)
            if found != SCHEMA_VERSION:
                raise SchemaMismatchError(found, SCHEMA_VERSION, pg_admin.upgrade_command(self.url))
        except BaseException:
            await conn.close()
            raise
        await self._listen(conn)
        self._pool = await asyncpg.create_pool(
            self.target.dsn,
            min_size=1,
            max_size=self.target.pool_size,
            # Every statement of the store finds its rows by an index or by ctid; a sequential scan only
            # ever came from a generic plan made while a table was tiny (see _by_key), kept for the
            # connection's life as the table grew. A sort, likewise: the statements walk an index in the
            # order they ask for, and a plan that read another index and sorted what it found (a key probe
            # through ix_records_group or ix_queue_due, the id a filter: every row of the kind or queue per
            # probe) only won while a table looked tiny, when sorting one row costs nothing. Listings and
            # history, whose best plan may sort, turn sorting back on for their own transaction
            # (_fetch_sorted). JIT off: a sort a statement cannot do without (the keys of a batch, in lock
            # order) carries the planner's penalty for disabled methods, which made its cost look worth
            # compiling (~220 ms a statement), and the store's statements are all short. Generic plans (see
            # _BEGIN): the batch written without a read was re-planned per execution otherwise, which cost
            # PostgreSQL more CPU than the round trips it saves (bench_instances, 3 instances: 1.88 ms of
            # PostgreSQL CPU per job before it, 2.57 with it re-planned, 1.53 with it planned once).
            server_settings={
                **self.target.server_settings(),
                "enable_seqscan": "off",
                "enable_sort": "off",
                "jit": "off",
                "plan_cache_mode": "force_generic_plan",
            },
            init=self._init_connection,
            reset=_keep_session,
        )

    def _target_url(self) -> str:
        """The URL with this store's effective schema (for Alembic)."""
        if not self.target.schema:
            return self.target.dsn
        joiner = "&" if "?" in self.target.dsn else "?"
        return f"{self.target.dsn}{joiner}schema={self.target.schema}"

    async def _init_connection(self, conn: Any) -> None:
        """Each new pool connection: remember its server pid while it lives (pids are reused after)."""
        pid = conn.get_server_pid()
        self._own_pids.add(pid)
        conn.add_termination_listener(lambda _conn: self._own_pids.discard(pid))

    def _on_notify(self, _conn: Any, pid: int, _channel: str, payload: str) -> None:
        if pid not in self._own_pids:  # our own commits woke our takers already
            self._notify(payload.split("\n"))

    async def _listen(self, conn: Any) -> None:
        self._listener = conn
        await conn.add_listener(self.channel, self._on_notify)
        conn.add_termination_listener(self._on_listener_lost)

    def _on_listener_lost(self, conn: Any) -> None:
        """The LISTEN connection died (a server restart, a network cut): listen again in the background."""
        if self._pool is None or conn is not self._listener:
            return  # closing
        self._listener = None
        self._relisten_task = asyncio.get_running_loop().create_task(self._relisten())

    async def _relisten(self) -> None:
        delay_s = 0.1
        while self._pool is not None:
            try:
                conn = await pg_admin.connect(self.target)
            except StoreError as exc:
                log.warning("PostgreSQL LISTEN connection lost; retrying in %.1f s: %s", delay_s, exc)
                await self.clock.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)
                continue
            if self._pool is None:
                await conn.close()
                return
            await self._listen(conn)
            # Notifications sent while no one listened are lost: every local taker looks again.
            self._notify(builtins.list(self._waiters))
            log.info("PostgreSQL LISTEN connection restored")
            return

    async def close(self) -> None:
        pool, listener = self._pool, self._listener
        if pool is None:
            return
        self._pool = self._listener = None
        if self._valve is not None:
            self._valve.cancel()
            self._valve = None
        if self._relisten_task is not None:
            self._relisten_task.cancel()
            self._relisten_task = None
        # Writes in flight finish (their callers are waiting on them) before the pool closes.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._return_spares(pool)
        if listener is not None and not listener.is_closed():
            try:
                await listener.remove_listener(self.channel, self._on_notify)
            finally:
                await listener.close()
        await pool.close()

    def _require_pool(self) -> Any:
        if self._pool is None:
            raise StoreError(
                "the PostgreSQL store is not open (use `async with store:` or `await store.open()`)"
            )
        return self._pool

    async def schema_version(self) -> str | None:
        async with self._connection() as conn:
            return await pg_admin.current_version(conn)

    # --- apply: group commit ----------------------------------------------------------------------

    async def apply(self, *ops: Op, durable: bool = True) -> builtins.list[Any]:
        pool = self._require_pool()
        # Encode first: a value JSON cannot hold fails the call before any round trip.
        call = Call(ops, [_encode(op) for op in ops], self.clock.now(), durable)
        if not self.group_commit:  # one transaction per call, each on a connection of its own
            try:
                async with self._connection() as conn:
                    await self._commit(conn, [call])
            except self._errors as exc:
                self._fail([call], exc)
            results = await call.future
            self._notify(notify_queues(ops))
            return results
        self._pending.append(call)
        # One writer at a time while its next batch stays small: calls arriving while it commits join that
        # batch (one statement when its writes name their versions, else a transaction of ~4 round trips).
        # Another writer for a backlog, or for calls the running writers leave waiting too long (one blocked
        # on a lock another instance holds must not hold up unrelated writes).
        if self._writers == 0 or (
            self._writers < self._max_writers and len(self._pending) >= _SPLIT_AT * self._writers
        ):
            self._start_writer(pool)
        elif self._valve is None:
            self._valve = asyncio.get_running_loop().call_later(_STUCK_S, self._unstick, self._pending[0])
        results = await call.future
        self._notify(notify_queues(ops))
        return results

    def _start_writer(self, pool: Any) -> None:
        self._writers += 1
        self._spawn(self._write(pool))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task of its own, kept until done (the loop holds tasks weakly; close waits
        for them)."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _unstick(self, oldest: Call) -> None:
        """``oldest`` waited :data:`_STUCK_S` for a writer: if no writer has taken it yet, start another."""
        self._valve = None
        pending, pool = self._pending, self._pool
        if not pending or pool is None:
            return
        if pending[0] is oldest and self._writers < self._max_writers:
            self._start_writer(pool)
        else:
            self._valve = asyncio.get_running_loop().call_later(_STUCK_S, self._unstick, pending[0])

    async def _write(self, pool: Any) -> None:
        """Commit everything pending, one transaction per batch, until nothing is left."""
        batch: builtins.list[Call] = []
        try:
            # Calls can arrive while the connection goes back to the pool: look again after that, and
            # stop only when the check and the exit happen with no await in between.
            while self._pending:
                try:
                    async with self._connection() as conn:
                        while self._pending:
                            batch = builtins.list(self._pending)
                            self._pending.clear()
                            if not await self._commit(conn, batch, chain=True):
                                break  # the connection failed: the next batch gets another
                        if not conn.is_closed() and conn.is_in_transaction():
                            await conn.execute("ROLLBACK")  # begun for calls another writer took
                except self._errors as exc:  # no connection to be had (or to give back)
                    self._fail([*batch, *self._pending], exc)
                    self._pending.clear()
        except BaseException as exc:
            self._fail([*batch, *self._pending], exc)
            self._pending.clear()
            raise
        finally:
            self._writers -= 1

    @staticmethod
    def _fail(calls: builtins.list[Call], exc: BaseException) -> None:
        failure = StoreError(f"PostgreSQL connection failed: {exc}")
        for call in calls:
            if not call.future.done():
                call.future.set_exception(failure)

    async def _commit(self, conn: Any, batch: builtins.list[Call], *, chain: bool = False) -> bool:
        """One transaction for ``batch``: planned as array statements when it holds several calls (see
        :mod:`podium.store.pg_batch`), else call by call; then resolve every call's future. ``False``:
        the connection failed (the calls got a StoreError). ``chain``: when calls wait by the time it
        commits, begin the connection's next transaction in the same round trip (the caller runs them next,
        or rolls that transaction back)."""
        durable = any(call.durable for call in batch)
        begin = _BEGIN if durable else f"{_BEGIN}; SET LOCAL synchronous_commit TO OFF"
        outcomes: builtins.list[Any] = []
        # Planned: a few statements whatever the size. Call by call: one statement per operation, fewer
        # round trips only for a lone call of a few operations.
        batched = len(batch) > 1 or len(batch[0].ops) > _PLAN_FROM_OPS
        # A lone call of one versioned Put (a task's claim, say) is one statement: its own transaction.
        alone = (
            len(batch) == 1
            and len(ops := batch[0].ops) == 1
            and type(put := ops[0]) is Put
            and bool(put.expected_version)
        )
        for attempt in range(_ATTEMPTS):
            try:
                if alone and not conn.is_in_transaction():
                    outcomes = [await self._writer.alone(conn, batch[0])]
                    break
                if not conn.is_in_transaction():
                    blind = await self._writer.blind(conn, batch)
                    if blind is not None:
                        outcomes = blind
                        break
                    await conn.execute(begin)
                elif not durable:  # begun by the previous batch's commit
                    await conn.execute("SET LOCAL synchronous_commit TO OFF")
                if batched:
                    try:
                        outcomes, queues = await self._writer.planned(conn, batch)
                    except Fallback:
                        await conn.execute(f"ROLLBACK; {begin}")
                        batched = False
                if not batched:
                    outcomes, queues = await self._writer.each(conn, batch)
                if queues:  # the wake-ups no history insert sent
                    await conn.execute(_NOTIFY, self.channel, packed(queues))
                if conn.is_in_transaction():  # a single refused call has rolled back already
                    await conn.execute(f"COMMIT; {_BEGIN}" if chain and self._pending else "COMMIT")
                break
            except BaseException as exc:
                try:  # (a connection the server cut is no longer ours to ask: the pool took it back)
                    if not conn.is_closed() and conn.is_in_transaction():
                        await conn.execute("ROLLBACK")
                except self._errors:
                    pass
                if isinstance(exc, self._retry) and attempt + 1 < _ATTEMPTS:
                    continue  # a deadlock with another instance: PostgreSQL rolled one of us back
                error = StoreError(f"PostgreSQL commit failed: {exc}")
                for call in batch:
                    if not call.future.done():
                        call.future.set_exception(error)
                if not isinstance(exc, self._errors):
                    raise
                return False
        for call, outcome in zip(batch, outcomes, strict=True):
            if call.future.done():
                continue
            if isinstance(outcome, BaseException):
                call.future.set_exception(outcome)
            else:
                call.future.set_result(outcome)
        return True

    # --- records --------------------------------------------------------------------------------

    async def _fetch(self, query: str, *args: Any) -> builtins.list[Any]:
        try:
            async with self._connection() as conn:
                rows: builtins.list[Any] = await conn.fetch(query, *args)
        except self._errors as exc:
            raise StoreError(f"PostgreSQL query failed: {exc}") from exc
        return rows

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A connection for a few statements (:meth:`_borrow`), given back after them."""
        pool = self._require_pool()
        conn = await self._borrow(pool)
        try:
            yield conn
        except BaseException:
            await pool.release(conn)  # the pool's release cleans up a statement cut off midway
            raise
        await self._give_back(pool, conn)

    async def _borrow(self, pool: Any) -> Any:
        """A connection for a few statements: one this store kept back (:data:`_SPARES`) when there is one,
        else the pool's."""
        if self._spares:
            return self._spares.pop()
        self._acquiring += 1
        try:
            return await pool.acquire()
        finally:
            self._acquiring -= 1

    async def _give_back(self, pool: Any, conn: Any) -> None:
        """A connection :meth:`_borrow` lent, its statements done: kept back while fewer than
        :data:`_SPARES` are, healthy and outside a transaction, and no borrower waits on the pool (which
        would wait for ever on a small pool whose connections all sit here), else back to the pool."""
        if (
            not self._acquiring
            and len(self._spares) < _SPARES
            and self._pool is not None
            and not conn.is_closed()
            and not conn.is_in_transaction()
        ):
            self._spares.append(conn)
        else:
            await pool.release(conn)

    async def _return_spares(self, pool: Any) -> None:
        """Give the connections kept back to ``pool`` (closing; a test that holds every connection)."""
        while self._spares:
            await pool.release(self._spares.pop())

    async def _fetch_sorted(self, query: str, *args: Any) -> builtins.list[Any]:
        """:meth:`_fetch` in a transaction of its own with sorting allowed and plans made for its arguments
        (the pool's connections run with ``enable_sort = off`` and generic plans): a listing or a history
        page, whose best plan may read a selective index and sort what it found rather than walk an ordered
        one."""
        try:
            async with self._connection() as conn:
                await conn.execute(
                    "BEGIN READ ONLY; SET LOCAL enable_sort = on; SET LOCAL plan_cache_mode = auto"
                )
                try:
                    rows: builtins.list[Any] = await conn.fetch(query, *args)
                finally:
                    await conn.execute("COMMIT")
        except self._errors as exc:
            raise StoreError(f"PostgreSQL query failed: {exc}") from exc
        return rows

    @staticmethod
    def _record(row: Any, at: int = 0) -> Record:
        """The record in the columns ``at..at+7`` of ``row`` (:data:`_RECORD_COLUMNS`)."""
        return Record(
            row[at],
            row[at + 1],
            row[at + 2],
            _loads(row[at + 5]),
            row[at + 3],
            row[at + 4],
            row[at + 6],
            row[at + 7],
        )

    async def get(self, kind: str, id: str) -> Record | None:
        """The record, read at once when no other read is out; else with every get that arrives while
        one is, in one :meth:`get_many` sent as soon as the read out comes back (a status poll each few
        milliseconds from many clients cost a statement each). A get always reads after it was called:
        it never takes the answer of a read sent before it."""
        if self._reads_out:
            future: asyncio.Future[Record | None] = asyncio.get_running_loop().create_future()
            self._gets.append(((kind, id), future))
            return await future
        self._reads_out += 1
        try:
            rows = await self._fetch(_GET_ONE, kind, id)
        finally:
            self._read_back()
        return self._record(rows[0]) if rows else None

    def _read_back(self) -> None:
        """A read came back: send the gets that waited for it, as one read."""
        self._reads_out -= 1
        if self._gets and not self._reads_out:
            self._reads_out += 1
            gets, self._gets = self._gets, []
            self._spawn(self._get_together(gets))

    async def _get_together(
        self, gets: builtins.list[tuple[tuple[str, str], asyncio.Future[Record | None]]]
    ) -> None:
        keys = builtins.list(dict.fromkeys(key for key, _ in gets))
        try:
            found = await self.get_many(keys)
        except BaseException as exc:
            for _, future in gets:
                if future.done():
                    continue
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                else:
                    future.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self._read_back()
        records = dict(zip(keys, found, strict=True))
        for key, future in gets:
            if not future.done():
                future.set_result(records[key])

    async def get_many(self, keys: Sequence[tuple[str, str]]) -> builtins.list[Record | None]:
        if not keys:
            return []
        kinds, ids = zip(*keys, strict=True)
        rows = await self._fetch(_GET_MANY, kinds, ids)
        found = {(row[0], row[1]): self._record(row) for row in rows}
        return [found.get(key) for key in keys]

    @staticmethod
    def _where(kind: str, status: str | Sequence[str] | None, group: str | None) -> tuple[str, list[Any]]:
        sql, args = "kind = $1", builtins.list[Any]([kind])
        statuses = status_filter(status)
        if statuses is not None:
            args.append(list(statuses))
            sql += f" AND status = ANY(${len(args)}::text[])"
        if group is not None:
            args.append(group)
            sql += f" AND grp = ${len(args)}"
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
            args.append(after)
            sql += f" AND id {'<' if descending else '>'} ${len(args)}"
        args.append(limit)
        order = "DESC" if descending else "ASC"
        rows = await self._fetch_sorted(
            f"SELECT {_RECORD_COLUMNS} FROM records WHERE {sql} ORDER BY id {order} LIMIT ${len(args)}", *args
        )
        return [self._record(row) for row in rows]

    async def count(
        self, kind: str, *, status: str | Sequence[str] | None = None, group: str | None = None
    ) -> int:
        sql, args = self._where(kind, status, group)
        rows = await self._fetch(f"SELECT count(*) FROM records WHERE {sql}", *args)
        return int(rows[0][0])

    # --- queues ---------------------------------------------------------------------------------

    async def take_now(
        self, queues: Sequence[str], *, owner: str, lease_s: float, limit: int
    ) -> builtins.list[Lease]:
        return await self.take_now_fetching(queues, owner=owner, lease_s=lease_s, limit=limit, fetch=None)

    async def take_now_fetching(
        self, queues: Sequence[str], *, owner: str, lease_s: float, limit: int, fetch: Fetch | None
    ) -> builtins.list[Lease]:
        """The take and the records ``fetch`` names in one statement (one round trip): read in the take's
        own snapshot, under its locks on the items."""
        now = self.clock.now()
        names = builtins.list(dict.fromkeys(queues))
        one = len(names) == 1
        first = names[0] if one else names
        args: builtins.list[Any] = [first, now, limit, owner, now + lease_s]
        if fetch is None:
            query = _TAKE_ONE if one else _TAKE_MANY
        elif fetch.group_kind is None:
            query = _TAKE_ONE_FETCH if one else _TAKE_MANY_FETCH
            args.append(fetch.kind)
        else:
            query = _TAKE_ONE_FETCH_GROUP if one else _TAKE_MANY_FETCH_GROUP
            args += [fetch.kind, fetch.group_kind]
        rows = await self._fetch(query, *args)
        rows.sort(key=lambda r: (-r[3], r[7]))
        expires = now + lease_s
        if fetch is None:
            return [Lease(r[0], r[1], _loads(r[2]), r[3], r[4], r[5], owner, expires, r[6]) for r in rows]
        width = 2 if fetch.group_kind is not None else 1
        return [
            Lease(
                r[0],
                r[1],
                _loads(r[2]),
                r[3],
                r[4],
                r[5],
                owner,
                expires,
                r[6],
                tuple(None if r[at] is None else self._record(r, at) for at in (8, 16)[:width]),
            )
            for r in rows
        ]

    async def next_due(self, queues: Sequence[str]) -> float | None:
        rows = await self._fetch(_NEXT_DUE, list(queues))
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    async def _held_update(self, lease: Lease, sets: str, due_at: float, now: float) -> None:
        rows = await self._fetch(
            f"UPDATE queue SET {sets} WHERE {_HELD} RETURNING 1",
            lease.queue,
            lease.id,
            lease.token,
            now,
            due_at,
        )
        if not rows:
            raise LeaseLostError(f"lease on {lease.queue}/{lease.id} (token {lease.token}) is no longer held")

    async def extend(self, lease: Lease, lease_s: float) -> Lease:
        now = self.clock.now()
        await self._held_update(lease, "due_at = $5", now + lease_s, now)
        return lease._replace(expires_at=now + lease_s)

    async def nack(self, lease: Lease, *, delay_s: float = 0.0) -> None:
        now = self.clock.now()
        await self._held_update(lease, "leased = 0, owner = '', due_at = $5", now + delay_s, now)
        await self._fetch("SELECT pg_notify($1, $2)", self.channel, lease.queue)
        self._notify([lease.queue])

    async def queue_depth(self, queue: str) -> dict[str, int]:
        rows = await self._fetch(
            "SELECT count(*) FILTER (WHERE due_at <= $2),"
            " count(*) FILTER (WHERE due_at > $2 AND leased = 0),"
            " count(*) FILTER (WHERE due_at > $2 AND leased = 1) FROM queue WHERE queue = $1",
            queue,
            self.clock.now(),
        )
        ready, delayed, leased = rows[0]
        return {"ready": ready, "delayed": delayed, "leased": leased}

    # --- locks ----------------------------------------------------------------------------------

    async def acquire_lock(self, name: str, owner: str, *, ttl_s: float) -> int | None:
        now = self.clock.now()
        rows = await self._fetch(
            "INSERT INTO locks(name, owner, token, expires_at) VALUES ($1, $2, nextval('podium_fence'), $3)"
            " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, token = excluded.token,"
            " expires_at = excluded.expires_at WHERE locks.expires_at <= $4 OR locks.owner = $2"
            " RETURNING token",
            name,
            owner,
            now + ttl_s,
            now,
        )
        return int(rows[0][0]) if rows else None

    async def refresh_lock(self, name: str, owner: str, token: int, *, ttl_s: float) -> bool:
        now = self.clock.now()
        rows = await self._fetch(
            "UPDATE locks SET expires_at = $1 WHERE name = $2 AND owner = $3 AND token = $4 AND expires_at > $5"
            " RETURNING 1",
            now + ttl_s,
            name,
            owner,
            token,
            now,
        )
        return bool(rows)

    async def release_lock(self, name: str, owner: str, token: int) -> bool:
        rows = await self._fetch(
            "DELETE FROM locks WHERE name = $1 AND owner = $2 AND token = $3 RETURNING 1", name, owner, token
        )
        return bool(rows)

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
        sql, args = history_query(
            lambda n: f"${n}",
            subject_id,
            event=event,
            status=status,
            since=since,
            until=until,
            after_seq=after_seq,
            limit=limit,
        )
        rows = await self._fetch_sorted(sql, *args)
        return [HistoryEntry(r[0], r[1], r[2], r[3], r[4], _loads(r[5])) for r in rows]


async def _keep_session(conn: Any) -> None:
    """A pool connection going back needs no reset beyond asyncpg's own (it rolls back a transaction left
    open): the store leaves no session state on pool connections (no LISTEN, SET, cursor or session
    advisory lock), so asyncpg's default reset query (one more round trip on every release) is skipped."""


def _encode(op: Op) -> str | None:
    """The JSON text an operation stores (``None`` for operations that store none)."""
    if isinstance(op, Put):
        return _dumps(op.data)
    if isinstance(op, Append):
        return _dumps(op.data) if op.data else _EMPTY
    if isinstance(op, Enqueue):
        return _dumps(op.payload) if op.payload else _EMPTY
    return None
