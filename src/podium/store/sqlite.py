"""The SQLite backend: podium's embedded default. One file, WAL, durable before a call returns.

Writes run on the calling event loop's thread, on one writing connection, each call in its own transaction
as it is made (the statements of a call cost less CPU than a hop to a thread and back, and a call that
need not wait for the disk is done before ``await`` yields). ``COMMIT`` itself does not wait for the disk:
with ``synchronous=FULL`` (the default) the store commits with SQLite's ``NORMAL`` and a thread of its own
(:class:`~podium.store.sqlite_sync.WalSyncer`) fsyncs the WAL outside the write lock, then releases the calls
that waited for it. A durable call returns only after an fsync that covers its commit; one fsync covers
every commit made before it started (group commit), and the next transactions run while the disk flushes
(no write waits behind another's fsync). ``durable=False`` calls (takes, claims) return at their commit; a
take that is its loop step's first call returns with its transaction open, and the step's later calls (the
claim) commit with it. A call that finds the write lock held by another process (several instances on one
file) goes to a writer thread that waits for it; calls made meanwhile queue behind it there and run as one transaction (a
SAVEPOINT each, so one call's conflict rolls back only that call), so order is kept. A take that finds
nothing due (idle workers' polls) is answered by a read, without a write transaction, and the ``counters``
table (fence tokens, queue order) is read only by transactions that use it.

Reads never wait behind a commit and see every call that returned before they started. A read does not
show this process's durable writes before they are on disk: a record written by a commit not yet synced is
returned once the sync has covered it (lists, counts and history wait for every commit they may see).
Another process on the same file may see a commit up to one fsync before it is durable, as with
``synchronous=NORMAL``; what it may do with it is bounded by what that process writes (its own writes wait
for their own fsync). A record this process wrote is read from the row it kept (its JSON text, decoded as a
read would decode it) while nobody else wrote since: ``PRAGMA data_version`` on the writing connection
changes only when another connection commits; it is asked only when the WAL index header (mapped from the
``-shm`` file, rewritten by every commit of any connection) changed since the last check that found no other
connection's commit (or since this store's own commit that began with the header as checked), so every read sees a commit another process finished before it (a request sent after
it) at no syscall; any other record by kind and id is read on the
event loop's thread with its own connection (a primary-key lookup costs ~7 us there, ~70 us of CPU through
a thread hop: job status polls are reads of one record); lists, counts and history run on a reader thread
with its own connection.

The schema is created by Alembic on a new file; an existing file whose schema version differs from
:data:`~podium.store.base.SCHEMA_VERSION` refuses to open with the command that migrates it.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from podium.clock import Clock
from podium.errors import LeaseLostError, SchemaMismatchError, StoreError
from podium.store import migrate
from podium.store.base import (
    SCHEMA_VERSION,
    Fetch,
    HistoryEntry,
    Lease,
    Op,
    Record,
    Store,
    dump_json,
    history_query,
    load_json,
    notify_queues,
    status_filter,
)
from podium.store.sqlite_ops import run_op
from podium.store.sqlite_sync import (
    Outcome,
    WalIndexHeader,
    WalSyncer,
    post_outcomes,
    post_to,
    set_sync_done,
)

__all__ = ["SQLiteStore"]

T = TypeVar("T")

_dumps, _loads = dump_json, load_json

_Call = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop, bool]
_Row = tuple[str, str, int, str | None, str | None, str, float, float]
"""A record as its row holds it: kind, id, version, status, group, data (JSON text), created_at, updated_at."""


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


_OPEN_BUSY_S = 30.0
"""How long opening the writing connection keeps trying while other processes opening the file lock it."""


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
        self._syncer: WalSyncer | None = None
        self._pending: builtins.list[_Call] = []
        self._pending_lock = threading.Lock()
        self._scheduled = False
        self._threaded = False  # calls go to the writer thread (another process held the write lock)
        self._write_lock = threading.Lock()  # the writing connection is used by one thread at a time
        self._step_loop: asyncio.AbstractEventLoop | None = None  # a call ran in this loop's current step
        self._deferred: builtins.list[_Call] = []  # calls made later in that step
        # That step's first call (a take) returned in a transaction still open, with the write lock
        # held by the loop's thread: the step's later calls run in it, and it commits with them.
        self._held = False
        self._before = 0  # total_changes when the transaction began
        self._counters: dict[str, int] | None = None  # read on a transaction's first use (None: not yet)
        self._tx_conn: sqlite3.Connection | None = None  # the connection of the transaction being run
        self._dirty: set[str] = set()  # the counters a transaction changed (written back at its end)
        self._touched: builtins.list[tuple[tuple[str, str], _Row | None]] = []  # what a batch writes
        # Records as this process last wrote them, valid while no other connection committed: a read of one
        # checks ``PRAGMA data_version`` on the writing connection (it changes only when another
        # connection commits) instead of reading the record.
        self._cache: dict[tuple[str, str], _Row] = {}
        self._data_version = 0
        self._shm: WalIndexHeader | None = None
        self._quiet: bytes | None = (
            None  # the WAL index header when a check found no other connection's commit
        )
        # The transaction being run began with the WAL index header still ``_quiet``: no other connection
        # committed since that check, nor can one before its COMMIT (it holds the write lock), so the header
        # after it is quiet too (the next read of a kept record needs no ``data_version``).
        self._sole = False
        self._unsynced: dict[tuple[str, str], int] = {}  # record -> the commit to sync before reading it
        self._unsynced_lock = threading.Lock()
        self._sync_waits: dict[tuple[asyncio.AbstractEventLoop, int], asyncio.Future[None]] = {}
        self._watcher: asyncio.Task[None] | None = None

    @property
    def _fsyncs(self) -> bool:
        """Whether durable calls wait for an fsync of the WAL (``FULL`` and ``EXTRA``)."""
        return self.synchronous.upper() in ("FULL", "EXTRA")

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
        self._syncer = WalSyncer(self.path, fsync=self._fsyncs, checkpoint=self._checkpoint)
        self._shm = WalIndexHeader(self.path)

    def _checkpoint(self) -> None:
        """Checkpoint the WAL on the writing connection (the syncer's thread), holding it: writes made
        meanwhile queue for the writer thread, so the checkpoint completes and the WAL starts over."""
        with self._write_lock:
            conn = self._conn
            if conn is not None:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _has_tables(self) -> bool:
        conn = sqlite3.connect(str(self.path))
        try:
            return bool(conn.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0])
        finally:
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        """The writing connection. Processes opening one file at once can find it locked in a way SQLite does
        not wait out (two connections each holding a lock the other's journal-mode switch needs: ``database
        is locked`` at once, not after the busy timeout): tried again until :data:`_OPEN_BUSY_S` passed."""
        deadline = time.monotonic() + _OPEN_BUSY_S
        while True:
            conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                # FULL's fsync is the syncer's (outside the write lock); the syncer checkpoints too
                conn.execute(f"PRAGMA synchronous={'NORMAL' if self._fsyncs else self.synchronous}")
                conn.execute("PRAGMA wal_autocheckpoint=0")
                # read while sqlite3's default busy timeout (5 s) still applies: another process opening the
                # same file at once (creating its schema, recovering the WAL) holds it locked a moment
                self._data_version = _data_version(conn)
            except sqlite3.OperationalError as exc:
                conn.close()
                busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF in (
                    sqlite3.SQLITE_BUSY,
                    sqlite3.SQLITE_LOCKED,
                )
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)  # this thread only (the store is opening): the other process's moment
                continue
            conn.execute("PRAGMA busy_timeout=0")  # a busy write lock sends the batch to the writer thread
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
        if self._shm is not None:
            self._shm.close()
            self._shm = self._quiet = None
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
        if self._deferred or self._held:
            self._end_step()
        while self._threaded:  # what the writer thread holds runs first
            await asyncio.get_running_loop().run_in_executor(executor, self._drain)
        syncer, self._syncer = self._syncer, None
        if syncer is not None:
            await asyncio.to_thread(syncer.close)  # what was committed is synced (and released) first
        self._conn = None
        await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        executor.shutdown(wait=True)
        self._executor = None

    async def schema_version(self) -> str | None:
        return await asyncio.to_thread(migrate.current_version, self.path)

    # --- the writes -----------------------------------------------------------------------------

    def _call(
        self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = True, hold: bool = False
    ) -> asyncio.Future[T]:
        """Run ``fn`` in a write transaction. The first call of a loop step runs here and now, in its own
        transaction (its future is done when this returns, unless it waits for an fsync; a take's (``hold``)
        transaction stays open until the step's end or this store's next read, and commits with the calls
        made later in the step: the take and the claim that follows it are one transaction. Until then
        others see the item not yet leased, and its lease is lost if the process dies: it is offered again,
        as after a power cut); the calls made
        later in the same step run together at its end, in one transaction (many calls at once: fewer
        commits), except a call that waits for an fsync: it commits at once, with the calls deferred before
        it (in order), so the fsync that covers it can start before the step ends (on a busy server the rest
        of a step is milliseconds, and a worker's next result waits for this one's answer); all of them
        queue for the writer thread while that thread holds the queue."""
        if self._conn is None or self._executor is None:
            raise StoreError("the SQLite store is not open (use `async with store:` or `await store.open()`)")
        self._check_synced()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        call: _Call = (fn, fut, loop, durable)
        if self._step_loop is loop:
            self._deferred.append(call)  # run at the end of this step, with the others made in it
            if durable and self._fsyncs:
                self._run_deferred()  # ... unless it waits for an fsync: now, after those before it
            return fut
        if self._write_lock.acquire(blocking=False):  # not held by the writer thread (or another loop)
            try:
                with self._pending_lock:
                    queued = self._threaded
                if not queued:
                    self._run_now([call], hold=hold)
                    self._step_loop = loop
                    loop.call_soon(self._end_step)
                    return fut
            finally:
                if not self._held:
                    self._write_lock.release()
        self._enqueue([call])
        return fut

    def _end_step(self) -> None:
        """The end of a loop step that ran a call: run the calls made after it, in that step, as one batch."""
        self._step_loop = None
        self._run_deferred()

    def _run_deferred(self) -> None:
        """Run the calls deferred in this step, in order, as one batch."""
        batch, self._deferred = self._deferred, []
        if self._held:  # in the step's open transaction (this thread holds the write lock): commit it
            assert self._conn is not None
            try:
                self._run_batch(self._conn, batch)
            finally:
                self._held = False
                self._write_lock.release()
            return
        if not batch:
            return
        if self._conn is None:
            self._settle([(fut, loop, None, _closed()) for _, fut, loop, _ in batch], [], 0)
            return
        if self._write_lock.acquire(blocking=False):
            try:
                with self._pending_lock:
                    queued = self._threaded
                if not queued:
                    self._run_now(batch)
                    return
            finally:
                self._write_lock.release()
        self._enqueue(batch)

    def _enqueue(self, calls: builtins.list[_Call], *, first: bool = False) -> None:
        """Hand calls to the writer thread (which keeps the queue until it is empty)."""
        with self._pending_lock:
            if first:
                self._pending[:0] = calls
            else:
                self._pending.extend(calls)
            self._threaded = True
            if not self._scheduled:
                self._scheduled = True
                assert self._executor is not None
                self._executor.submit(self._drain)

    def _check_synced(self) -> None:
        syncer = self._syncer
        if syncer is not None and syncer.failure is not None:
            raise StoreError(
                f"SQLite fsync failed earlier ({syncer.failure}): the store refuses further calls"
            )

    def _flush(self) -> None:
        """Before a read on the loop's thread: commit the step's open transaction (reads see what returned)."""
        if self._held:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # another thread's read: as if made before the transaction
            if loop is self._step_loop:
                self._run_deferred()

    def _run_now(self, batch: builtins.list[_Call], *, hold: bool = False) -> None:
        """Run calls in one transaction on this thread, unless another process holds the write lock: then
        they go to the writer thread, which waits for the lock (and the calls after them follow them there
        until it is done, so order is kept)."""
        conn = self._conn
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                self._enqueue(batch, first=True)
            else:
                failure = StoreError(f"SQLite commit failed: {exc}")
                self._settle([(fut, loop, None, failure) for _, fut, loop, _ in batch], [], 0)
            return
        shm = self._shm
        self._sole = shm is not None and self._quiet is not None and shm.read() == self._quiet
        self._run_batch(conn, batch, hold=hold)

    def _drain(self) -> None:
        """On the writer thread: run every queued call in one transaction, waiting for the write lock."""
        with self._write_lock:
            with self._pending_lock:
                batch, self._pending = self._pending, []
                self._scheduled = False
                if not batch:
                    self._threaded = False  # calls run on their own thread again
                    return
            conn = self._conn
            if conn is None:
                self._settle([(fut, loop, None, _closed()) for _, fut, loop, _ in batch], [], 0)
                return
            self._sole = False
            try:
                conn.execute("PRAGMA busy_timeout=10000")
                try:
                    conn.execute("BEGIN IMMEDIATE")
                finally:
                    conn.execute("PRAGMA busy_timeout=0")
            except sqlite3.Error as exc:
                failure = StoreError(f"SQLite commit failed: {exc}")
                self._settle([(fut, loop, None, failure) for _, fut, loop, _ in batch], [], 0)
            else:
                self._run_batch(conn, batch)
            with self._pending_lock:
                if not self._pending:
                    self._threaded = False
                elif not self._scheduled:
                    self._scheduled = True
                    assert self._executor is not None
                    self._executor.submit(self._drain)

    def _run_batch(
        self, conn: sqlite3.Connection, batch: builtins.list[_Call], *, hold: bool = False
    ) -> None:
        """Run the calls (a savepoint each) in the open transaction, commit once, then settle them. ``hold``
        (one call): once it succeeded, resolve it and leave the transaction open (``_held``)."""
        outcomes: builtins.list[Outcome] = []
        durable: builtins.list[Outcome] = []
        seq = 0
        try:
            # Counters are read once per transaction, by its first call that needs one (under the write
            # lock, so other processes on the same file cannot interleave), and written back once at the end;
            # most transactions (creations, results, takes that find nothing) need none.
            if not self._held:  # a new transaction (else the held one goes on)
                self._counters = None
                self._tx_conn = conn
                self._dirty = set()
                self._before = conn.total_changes
                self._touched = []
            single, self._held = len(batch) == 1 and not self._held, False
            for fn, fut, loop, wants_disk in batch:
                if not single:
                    conn.execute("SAVEPOINT call")
                mark = len(self._touched)
                try:
                    result = fn(conn)
                except BaseException as exc:
                    del self._touched[mark:]  # rolled back: not written
                    conn.execute("ROLLBACK" if single else "ROLLBACK TO call")
                    if not single:
                        conn.execute("RELEASE call")
                    outcome: Outcome = (fut, loop, None, exc)
                else:
                    if not single:
                        conn.execute("RELEASE call")
                    outcome = (fut, loop, result, None)
                (durable if wants_disk and self._fsyncs else outcomes).append(outcome)
            if hold and conn.in_transaction and not durable:
                self._held = (
                    True  # commits at the step's end (or the next read), with the calls made till then
                )
                post_outcomes(outcomes)
                return
            if conn.in_transaction:
                if self._dirty and self._counters is not None:
                    conn.executemany(
                        "INSERT INTO counters(name, value) VALUES (?, ?)"
                        " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                        [(name, self._counters[name]) for name in self._dirty],
                    )
                syncer = self._syncer
                if syncer is not None and conn.total_changes != self._before:
                    if self._fsyncs and durable:
                        seq = syncer.reserve()  # from here on the commit may be visible: reads wait for it
                        with self._unsynced_lock:
                            unsynced = self._unsynced
                            if len(unsynced) > 4096:  # those nobody read since their sync
                                unsynced = self._unsynced = {
                                    k: s for k, s in unsynced.items() if s > syncer.synced
                                }
                            for key, _ in self._touched:
                                unsynced[key] = seq
                    else:
                        syncer.wrote()
                try:
                    conn.execute("COMMIT")
                finally:
                    if seq:
                        assert syncer is not None
                        syncer.committed(seq)
                self._remember(self._touched)
                if self._sole and self._shm is not None:
                    self._quiet = self._shm.read()
            if durable and not seq and self._syncer is not None:
                seq = self._syncer.visible  # wrote nothing: what it read must be on disk before it returns
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._cache.clear()  # whatever it wrote is unknown now
            failure = StoreError(f"SQLite commit failed: {exc}")
            outcomes = [(fut, loop, None, failure) for fut, loop, _, _ in outcomes + durable]
            durable = []
        self._settle(outcomes, durable, seq)

    CACHE_SIZE = 10_000
    """Records kept as this process last wrote them (the least recently written go first)."""

    def _remember(self, touched: builtins.list[tuple[tuple[str, str], _Row | None]]) -> None:
        """Keep what a committed batch wrote (writing connection's thread, under the write lock)."""
        cache = self._cache
        for key, rec in touched:
            cache.pop(key, None)
            if rec is not None:
                cache[key] = rec
        while len(cache) > self.CACHE_SIZE:
            del cache[next(iter(cache))]

    def _cached(self, key: tuple[str, str]) -> _Row | None:
        """The record as this process last wrote it, if no other connection committed since (then the
        kept records are dropped); ``None`` when the store must be read."""
        cache = self._cache
        conn, shm = self._conn, self._shm
        if key not in cache or conn is None:
            return None
        if shm is not None and self._quiet is not None and shm.read() == self._quiet:
            return cache.get(key)  # nobody committed since a check found no other connection's commit
        if not self._write_lock.acquire(blocking=False):
            return None
        try:
            # read under the write lock (this process's commits and what they keep wait), before the check:
            # while it stays the same, nobody committed after the check
            header = shm.read() if shm is not None else None
            version = _data_version(conn)
        except sqlite3.Error:
            return None
        finally:
            self._write_lock.release()
        self._quiet = header
        if version != self._data_version:
            cache.clear()
            self._data_version = version
            return None
        return cache.get(key)

    def _settle(self, now: builtins.list[Outcome], later: builtins.list[Outcome], seq: int) -> None:
        """Resolve ``now`` at once and ``later`` once a sync covers commit ``seq``."""
        post_outcomes(now)
        if not later:
            return
        syncer = self._syncer
        if syncer is None:
            post_outcomes([(fut, loop, None, _closed()) for fut, loop, _, _ in later])
            return

        def synced(failure: BaseException | None) -> None:
            if failure is None:
                post_outcomes(later)
            else:
                error = StoreError(f"SQLite fsync failed ({failure}): the write may not be on disk")
                post_outcomes([(fut, loop, None, error) for fut, loop, _, _ in later])

        syncer.after(seq, synced)

    def _unsynced_commit(self, key: tuple[str, str]) -> int | None:
        """The commit not yet on disk that last wrote ``key``, if any (synced entries are dropped here,
        and all of them once there are many: the syncer does not stop for this)."""
        unsynced = self._unsynced
        seq = unsynced.get(key) if unsynced else None
        if seq is None:
            return None
        syncer = self._syncer
        synced = syncer.synced if syncer is not None else seq
        if seq > synced:
            return seq
        with self._unsynced_lock:
            if unsynced.get(key) == seq:
                del unsynced[key]
            if len(unsynced) > 1024:
                self._unsynced = {k: s for k, s in unsynced.items() if s > synced}
        return None

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read on the reader thread (its own connection, outside the writer's transactions); it
        returns once every commit it may have seen is on disk."""
        if self._rconn is None or self._reader is None:
            raise StoreError("the SQLite store is not open (use `async with store:` or `await store.open()`)")
        if self._held:
            self._flush()
        result = await asyncio.get_running_loop().run_in_executor(self._reader, fn, self._rconn)
        syncer = self._syncer
        if syncer is not None and syncer.synced < syncer.visible:
            await self._synced(syncer.visible)  # every commit it may have seen had reserved its number
        return result

    async def _synced(self, seq: int) -> None:
        """Wait until a sync covers commit ``seq`` (the reads waiting for one commit share one wake-up)."""
        syncer = self._syncer
        if syncer is None or syncer.synced >= seq:
            return
        loop = asyncio.get_running_loop()
        waits = self._sync_waits
        fut = waits.get((loop, seq))
        if fut is None or fut.done():
            fut = waits[(loop, seq)] = loop.create_future()

            def done(failure: BaseException | None, fut: asyncio.Future[None] = fut) -> None:
                post_to(loop, set_sync_done, fut, failure)

            fut.add_done_callback(lambda _: waits.pop((loop, seq), None))
            syncer.after(seq, done)
        await asyncio.shield(fut)

    # --- apply ----------------------------------------------------------------------------------

    async def apply(self, *ops: Op, durable: bool = True) -> builtins.list[Any]:
        now = self.clock.now()
        results = await self._call(
            lambda conn: [run_op(conn, op, now, self._touched, self._next) for op in ops], durable=durable
        )
        self._notify(notify_queues(ops))
        return results

    def _next(self, name: str) -> int:
        """The next value of a counter (fence tokens, queue order); writer thread only, in a batch."""
        counters = self._counters
        if counters is None:
            assert self._tx_conn is not None
            counters = self._counters = dict(
                self._tx_conn.execute("SELECT name, value FROM counters").fetchall()
            )
        value = counters.get(name, 0) + 1
        counters[name] = value
        self._dirty.add(name)
        return value

    # --- records --------------------------------------------------------------------------------

    @staticmethod
    def _record(row: Sequence[Any]) -> Record:
        return Record(row[0], row[1], row[2], _loads(row[5]), row[3], row[4], row[6], row[7])

    def _peek_row(self, kind: str, id: str) -> _Row | None:
        """The kept row of a record nobody else wrote since, its commit on disk; ``None``: read it."""
        if self._held:
            self._flush()
        row = self._cached((kind, id)) if self._cache else None
        return None if row is None or self._unsynced_commit((kind, id)) is not None else row

    def peek(self, kind: str, id: str) -> Record | None:
        row = self._peek_row(kind, id)
        return None if row is None else self._record(row)

    def peek_mark(self, kind: str, id: str) -> tuple[int, float, float] | None:  # as peek, not decoded
        row = self._peek_row(kind, id)
        return None if row is None else (row[2], row[6], row[7])

    async def get(self, kind: str, id: str) -> Record | None:
        if self._held:
            self._flush()
        cached = self._cached((kind, id)) if self._cache else None
        if cached is not None:
            seq = self._unsynced_commit((kind, id))
            if seq is not None:
                await self._synced(seq)  # written by a commit not yet on disk
            return self._record(cached)  # decoded from the stored text, as a read would

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
                rec = run(conn)
            except sqlite3.OperationalError:
                pass  # busy (another process holds the file a moment): read on the reader thread
            else:
                # written by a commit of this process not yet on disk: returned once it is
                seq = self._unsynced_commit((kind, id))
                if seq is not None:
                    await self._synced(seq)
                return rec
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
        return await self._take(queues, owner=owner, lease_s=lease_s, limit=limit)

    def _take(
        self, queues: Sequence[str], *, owner: str, lease_s: float, limit: int
    ) -> asyncio.Future[builtins.list[Lease]]:
        now = self.clock.now()
        if self._nothing_due(queues, now):
            self._check_synced()
            done: asyncio.Future[builtins.list[Lease]] = asyncio.get_running_loop().create_future()
            done.set_result([])
            return done

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

        # A take that a power cut loses only offers the item again: no need to wait for the disk (nor to
        # commit before the step's end: the claim that follows it joins its transaction).
        return self._call(run, durable=False, hold=True)

    def _nothing_due(self, queues: Sequence[str], now: float) -> bool:
        """Whether no item of ``queues`` is due, by a read on the event loop's thread (a take that finds
        nothing then needs no write transaction: most takes of idle workers find nothing), on the writing
        connection (:meth:`_free_writer`: its page cache holds what this process wrote; another connection
        would read those pages again after every commit). A later enqueue wakes the waiting takers."""
        conn = self._free_writer()
        if conn is None:
            return False
        try:
            return self._none_due(conn, queues, now)
        finally:
            if not self._held:
                self._write_lock.release()

    @staticmethod
    def _none_due(conn: sqlite3.Connection, queues: Sequence[str], now: float) -> bool:
        try:
            for name in dict.fromkeys(queues):
                if conn.execute(
                    "SELECT 1 FROM queue INDEXED BY ix_queue_due WHERE queue = ? AND due_at <= ? LIMIT 1",
                    (name, now),
                ).fetchone():
                    return False
        except sqlite3.OperationalError:
            return False  # busy a moment: the take runs as a write
        return True

    CROSS_PROCESS_POLL_S = 0.2
    """How often a process with waiting takers checks whether another process committed to the file
    (``PRAGMA data_version``: one cheap read, no scan); waiters wake only when one did."""

    async def _take_now_safely(
        self, queues: Sequence[str], *, owner: str, lease_s: float, limit: int, fetch: Fetch | None = None
    ) -> builtins.list[Lease]:
        """:meth:`take_now` for :meth:`Store.take`, which has registered its waiter: while anyone waits, a
        watcher wakes waiters on another process's commit to the file (several instances on one file). A
        take done at once cannot be cancelled half-way; one queued behind another process's write lock is
        shielded as :meth:`Store._take_now_safely` does."""
        if self._waiters and self._watcher is None and self._conn is not None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch_other_writers())
        if fetch is not None:  # the take, then the read, shielded together
            return await super()._take_now_safely(
                queues, owner=owner, lease_s=lease_s, limit=limit, fetch=fetch
            )
        take = self._take(queues, owner=owner, lease_s=lease_s, limit=limit)
        if take.done():
            return take.result()
        try:
            return await asyncio.shield(take)
        except asyncio.CancelledError:
            take.add_done_callback(self._give_back_late)
            raise

    async def _watch_other_writers(self) -> None:
        """While takers wait, wake them when another connection committed (``data_version`` changed).
        A woken taker registers again and starts a watcher if this one has left meanwhile."""
        try:
            seen = await self._call(_data_version, durable=False)
            while self._conn is not None:
                # Wall-clock time, not the injected clock: this polls the file for other processes' commits,
                # an I/O interval rather than a deadline of podium's (a ManualClock in tests must not have
                # to drive it, nor see its sleeper among the store's own deadlines).
                await asyncio.sleep(self.CROSS_PROCESS_POLL_S)
                if self._conn is None or not self._waiters:
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
        sql = f"SELECT min(due_at) FROM queue WHERE queue IN ({','.join('?' * len(queues))})"
        self._check_synced()
        row: Any = None
        conn = self._free_writer()  # no write of this process is still to run: a read, no transaction
        if conn is not None:
            try:
                row = conn.execute(sql, queues).fetchone()
            except sqlite3.OperationalError:  # busy a moment: read in a transaction, as below
                conn = None
            finally:
                if not self._held:
                    self._write_lock.release()
        if conn is None:
            row = await self._call(lambda conn: conn.execute(sql, queues).fetchone(), durable=False)
        return float(row[0]) if row and row[0] is not None else None

    def _free_writer(self) -> sqlite3.Connection | None:
        """The writing connection for a read on the loop's thread that sees every call made before it, if
        no write of this process is still to run (deferred in this step, or queued for the writer thread),
        else ``None``. Outside the step's open transaction (``_held``) it takes the write lock: the caller
        releases it after its read."""
        conn = self._conn
        if conn is None or self._deferred or self._threaded:
            return None
        if self._held:
            return conn if self._step_loop is asyncio.get_running_loop() else None
        return conn if self._write_lock.acquire(blocking=False) else None

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

        return await self._call(run, durable=False)  # a read

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


def _closed() -> StoreError:
    return StoreError("the SQLite store was closed before the call ran")
