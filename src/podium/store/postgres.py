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
import math
import zlib
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

from podium.clock import Clock
from podium.errors import ConflictError, LeaseLostError, SchemaMismatchError, StoreError
from podium.store import pg_admin
from podium.store.base import (
    SCHEMA_VERSION,
    Ack,
    Append,
    Delete,
    Dequeue,
    Enqueue,
    Fetch,
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
from podium.store.pg_batch import BatchCall, Fallback, HeldRow, RecordRow, plan_batch, predict
from podium.store.pg_sql import (
    _APPEND_ONE,
    _AT_ITEM,
    _AT_RECORD,
    _BLIND_WRITE,
    _ENQUEUE,
    _ENQUEUE_LEASED,
    _GET_MANY,
    _GET_ONE,
    _HELD,
    _INSERT_HISTORY,
    _INSERT_HISTORY_ONE,
    _INSERT_ITEMS,
    _LOCK_ROWS,
    _NEXT_DUE,
    _NOTIFY,
    _PUT_ANY,
    _PUT_NEW,
    _PUT_VERSION,
    _PUT_VERSION_ALONE,
    _RECORD_COLUMNS,
    _TAKE_MANY,
    _TAKE_MANY_FETCH,
    _TAKE_MANY_FETCH_GROUP,
    _TAKE_ONE,
    _TAKE_ONE_FETCH,
    _TAKE_ONE_FETCH_GROUP,
    _VERSION,
    _VERSION_LOCKED,
    _WRITE_ROWS,
    _WRITE_ROWS_HISTORY,
    BLIND_MISS,
)

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


class _Call:
    """One pending :meth:`PostgresStore.apply`: its operations, their encodings and its future."""

    __slots__ = ("blobs", "durable", "future", "now", "ops")

    def __init__(self, ops: Sequence[Op], blobs: builtins.list[str | None], now: float, durable: bool):
        self.ops, self.blobs, self.now, self.durable = ops, blobs, now, durable
        self.future: asyncio.Future[builtins.list[Any]] = asyncio.get_running_loop().create_future()


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
        self._pending: deque[_Call] = deque()
        self._writers = 0
        self._valve: asyncio.TimerHandle | None = None  # see _unstick
        self._tasks: set[asyncio.Task[None]] = set()
        self._relisten_task: asyncio.Task[None] | None = None
        self._own_pids: set[int] = set()  # server pids of this store's pool connections
        self._spares: builtins.list[Any] = []  # pool connections kept back between statements (_borrow)
        self._acquiring = 0  # borrowers waiting on the pool
        # Writers (one, more only for a backlog: see apply) leave connections free for takes and reads.
        self._max_writers = max(1, self.target.pool_size - 2)
        self.group_commit = group_commit
        self._errors: tuple[type[BaseException], ...] = ()
        self._retry: tuple[type[BaseException], ...] = ()
        self._miss: type[BaseException] = Exception  # the check of _BLIND_WRITE failed (set by open)

    # --- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        asyncpg = pg_admin.import_asyncpg()
        self._errors = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
        self._retry = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
        self._miss = asyncpg.InvalidTextRepresentationError
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
        while self._spares:
            await pool.release(self._spares.pop())
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
        call = _Call(ops, [_encode(op) for op in ops], self.clock.now(), durable)
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
        task = asyncio.get_running_loop().create_task(self._write(pool))
        self._tasks.add(task)  # the loop holds tasks weakly
        task.add_done_callback(self._tasks.discard)

    def _unstick(self, oldest: _Call) -> None:
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
        batch: builtins.list[_Call] = []
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
    def _fail(calls: builtins.list[_Call], exc: BaseException) -> None:
        failure = StoreError(f"PostgreSQL connection failed: {exc}")
        for call in calls:
            if not call.future.done():
                call.future.set_exception(failure)

    async def _commit(self, conn: Any, batch: builtins.list[_Call], *, chain: bool = False) -> bool:
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
                    outcomes = [await self._put_alone(conn, batch[0])]
                    break
                if not conn.is_in_transaction():
                    blind = await self._run_blind(conn, batch)
                    if blind is not None:
                        outcomes = blind
                        break
                    await conn.execute(begin)
                elif not durable:  # begun by the previous batch's commit
                    await conn.execute("SET LOCAL synchronous_commit TO OFF")
                if batched:
                    try:
                        outcomes, queues = await self._run_planned(conn, batch)
                    except Fallback:
                        await conn.execute(f"ROLLBACK; {begin}")
                        batched = False
                if not batched:
                    outcomes, queues = await self._run_each(conn, batch)
                if queues:  # the wake-ups no history insert sent
                    await conn.execute(_NOTIFY, self.channel, _packed(queues))
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

    async def _run_blind(self, conn: Any, batch: builtins.list[_Call]) -> builtins.list[Any] | None:
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
                *_columns(updated, 2),
                expected,
                *_columns(held, 2),
                [acks[key][0] if key in acks else None for key in held],
                [acks[key][1] if key in acks else None for key in held],
                *_columns(updates, 7),
                *_columns(plan.record_inserts, 8),
                *_columns(items, 8),
                *_columns(history, 5),
                self.lock_class,
                sorted({subject_lock(row[0]) for row in history}),
                self.channel,
                _packed(plan.queues_to_notify),
                any(call.durable for call in batch),
            )
        except self._miss as exc:
            if BLIND_MISS not in str(exc):
                raise
            return None
        created = {(r[1], r[2]): r[4] for r in rows if r[0] == 0}
        deleted = {(r[1], r[2]) for r in rows if r[0] == 3}
        for call, result in zip(batch, plan.outcomes, strict=True):
            assert isinstance(result, builtins.list)  # every call went through (above)
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

    async def _put_alone(self, conn: Any, call: _Call) -> builtins.list[Any] | ConflictError:
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

    async def _run_each(self, conn: Any, batch: builtins.list[_Call]) -> tuple[builtins.list[Any], set[str]]:
        """Each call in turn, inside its own savepoint when there are several; the wake-ups still to send."""
        outcomes: builtins.list[Any] = []
        queues: set[str] = set()
        single = len(batch) == 1
        for call in batch:
            if not single:
                await conn.execute("SAVEPOINT call")
            try:
                results = await self._run_call(conn, call)
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

    async def _run_call(self, conn: Any, call: _Call) -> builtins.list[Any]:
        """One call's operations, its history lines last: their ``seq`` values are drawn under the subjects'
        locks, after everything else this transaction waits for (see the module docstring)."""
        results: builtins.list[Any] = []
        appends: builtins.list[int] = []
        for index, (op, blob) in enumerate(zip(call.ops, call.blobs, strict=True)):
            if type(op) is Append:
                appends.append(index)
                results.append(None)
            else:
                results.append(await self._op(conn, op, blob, call.now))
        entries = [(index, op) for index in appends if isinstance(op := call.ops[index], Append)]
        locks: builtins.list[int] | None = sorted({subject_lock(op.subject_id) for _, op in entries})
        for index, op in entries:
            args = (op.subject_id, op.event, op.status, call.now, call.blobs[index])
            if locks is None:
                seq = await conn.fetchval(_APPEND_ONE, *args)
            else:  # the first line takes the locks and sends the call's wake-ups
                wake = _packed(notify_queues(call.ops))
                seq = await conn.fetchval(
                    _INSERT_HISTORY_ONE, *args, self.lock_class, locks, self.channel, wake
                )
                locks = None  # taken, for the rest of the transaction
            results[index] = HistoryEntry(seq, op.subject_id, op.event, op.status, call.now, op.data or {})
        return results

    async def _run_planned(
        self, conn: Any, batch: builtins.list[_Call]
    ) -> tuple[builtins.list[Any], set[str]]:
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
            rec_cols, q_cols = _columns(builtins.list(rec_keys), 2), _columns(builtins.list(q_keys), 2)
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
        inserted: builtins.list[Any] = []
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
                *_columns(updates, 7),
                *_columns(plan.record_inserts, 8),
                [where[(True, *key)] for key in plan.queue_deletes],
                *_columns([] if reinserted else item_rows, 8),
            ]
            if plan.appends and not reinserted:  # the history lines in the same statement
                rows = [row for _, _, row in plan.appends]
                locks = sorted({subject_lock(row[0]) for row in rows})
                wake = _packed(plan.queues_to_notify)
                out = await conn.fetch(
                    _WRITE_ROWS_HISTORY, *args, *_columns(rows, 5), self.lock_class, locks, self.channel, wake
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
            inserted = await conn.fetch(_INSERT_ITEMS, *_columns(item_rows, 8))
        if item_rows:
            if len(inserted) != len(item_rows):
                raise Fallback("another instance enqueued one of these items first")
            plan.fill_tokens({(r[0], r[1]): r[2] for r in inserted})
        if plan.appends:
            rows = [row for _, _, row in plan.appends]
            locks = sorted({subject_lock(row[0]) for row in rows})
            wake = _packed(plan.queues_to_notify)
            seqs = await conn.fetch(
                _INSERT_HISTORY, *_columns(rows, 5), self.lock_class, locks, self.channel, wake
            )
            plan.fill_seqs([r[0] for r in seqs])
            return plan.outcomes, set()  # the insert sent the wake-ups
        return plan.outcomes, plan.queues_to_notify

    async def _op(self, conn: Any, op: Op, blob: str | None, now: float) -> Any:
        """One operation other than an :class:`Append` (:meth:`_run_call` writes those)."""
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

    async def _return_spares(self) -> None:
        """Give the connections kept back to the pool (closing; a test that holds every connection)."""
        pool, spares = self._pool, self._spares
        while spares:
            conn = spares.pop()
            if pool is not None:
                await pool.release(conn)

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
        rows = await self._fetch(_GET_ONE, kind, id)
        return self._record(rows[0]) if rows else None

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


_PAYLOAD_BYTES = 7000
"""A notification's payload holds several names, one a line, up to this size (PostgreSQL's limit is 8000)."""


def _packed(names: set[str]) -> builtins.list[str]:
    """The payloads that carry ``names``: one notification per few dozen names rather than one each (every
    listening instance is signalled and reads each notification)."""
    out: builtins.list[str] = []
    chunk: builtins.list[str] = []
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


async def _keep_session(conn: Any) -> None:
    """A pool connection going back needs no reset beyond asyncpg's own (it rolls back a transaction left
    open): the store leaves no session state on pool connections (no LISTEN, SET, cursor or session
    advisory lock), so asyncpg's default reset query (one more round trip on every release) is skipped."""


def subject_lock(subject: str) -> int:
    """The advisory lock key (an int4) under which a history subject's ``seq`` values are drawn."""
    return zlib.crc32(subject.encode()) - 2**31


def _columns(rows: Sequence[Sequence[Any]], width: int) -> builtins.list[builtins.list[Any]]:
    """Rows as ``width`` column lists (the arrays an ``unnest`` statement takes)."""
    return [[row[i] for row in rows] for i in range(width)]


def _encode(op: Op) -> str | None:
    """The JSON text an operation stores (``None`` for operations that store none)."""
    if isinstance(op, Put):
        return _dumps(op.data)
    if isinstance(op, Append):
        return _dumps(op.data) if op.data else _EMPTY
    if isinstance(op, Enqueue):
        return _dumps(op.payload) if op.payload else _EMPTY
    return None
