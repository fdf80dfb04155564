"""The SQLite store: writes commit on the caller's thread and are made durable by one fsync of the WAL outside
SQLite's write lock (the syncer thread); a durable call returns only after that fsync, a read never waits
behind one unless it would show a write not yet on disk, and records this process wrote are read from a cache
that another connection's commit invalidates (``PRAGMA data_version``)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from podium.errors import StoreError
from podium.store import Delete, Put, SQLiteStore, open_store, sqlite_path, sqlite_synchronous

WAIT_S = 10


class HeldFsync:
    """Holds the syncer's fsyncs until released; counts them."""

    def __init__(self, store: SQLiteStore) -> None:
        assert store._syncer is not None
        self.syncer = store._syncer
        self.real = self.syncer._fsync_wal
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        self.fail: OSError | None = None
        self.syncer._fsync_wal = self._fsync  # type: ignore[method-assign]

    def _fsync(self) -> None:
        self.calls += 1
        self.entered.set()
        self.release.wait(WAIT_S)
        if self.fail is not None:
            raise self.fail
        self.real()

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, WAIT_S), "no fsync started"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "s.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_a_durable_write_returns_after_its_fsync_and_reads_do_not_wait_for_one(
    store: SQLiteStore,
) -> None:
    [before] = await store.apply(Put("job", "j0", {"n": 0}, None, "running"))
    [old] = await store.apply(Put("job", "j1", {"n": 1}, None, "running"))
    held = HeldFsync(store)
    writing = asyncio.ensure_future(store.apply(Put("job", "j1", {"n": 2}, old.version, "finished")))
    await held.wait_entered()
    # the commit is made, its fsync has not returned: the write has not returned either
    done, _ = await asyncio.wait({writing}, timeout=0.2)
    assert not done
    # other records read at once; a write that need not be durable returns at its commit
    got = await asyncio.wait_for(store.get("job", "j0"), WAIT_S)
    assert got is not None and got.data == {"n": 0} and got.version == before.version
    await asyncio.wait_for(store.apply(Put("job", "j2", {"n": 3}, None, "running"), durable=False), WAIT_S)
    # the record being written is not shown before it is on disk
    reading = asyncio.ensure_future(store.get("job", "j1"))
    listing = asyncio.ensure_future(store.list("job", status="finished"))
    done, _ = await asyncio.wait({reading, listing}, timeout=0.2)
    assert not done
    held.release.set()
    [new] = await asyncio.wait_for(writing, WAIT_S)
    rec = await asyncio.wait_for(reading, WAIT_S)
    assert rec is not None and rec.data == {"n": 2} and rec.version == new.version == old.version + 1
    assert [r.id for r in await asyncio.wait_for(listing, WAIT_S)] == ["j1"]


async def test_one_fsync_covers_every_commit_made_before_it(store: SQLiteStore) -> None:
    held = HeldFsync(store)
    first = asyncio.ensure_future(store.apply(Put("job", "first", {}, None, "running")))
    await held.wait_entered()
    writes = [
        asyncio.ensure_future(store.apply(Put("job", f"j{i}", {"i": i}, None, "running"))) for i in range(20)
    ]
    done, _ = await asyncio.wait(writes, timeout=0.2)
    assert not done  # committed, waiting for the disk
    held.release.set()
    await asyncio.wait_for(asyncio.gather(first, *writes), WAIT_S)
    assert held.calls == 2  # the held one, then one for all twenty
    assert await store.count("job") == 21


async def test_a_failed_fsync_fails_the_writes_waiting_for_it_and_every_call_after(
    store: SQLiteStore,
) -> None:
    held = HeldFsync(store)
    held.fail = OSError(5, "Input/output error")
    writing = asyncio.ensure_future(store.apply(Put("job", "j1", {}, None, "running")))
    await held.wait_entered()
    held.release.set()
    with pytest.raises(StoreError, match="fsync failed"):
        await asyncio.wait_for(writing, WAIT_S)
    with pytest.raises(StoreError, match="fsync failed"):
        await store.apply(Put("job", "j2", {}, None, "running"))


OTHER_PROCESS = """
import asyncio, sys
from podium.store import Delete, Put, SQLiteStore

async def main(path, op):
    async with SQLiteStore(path) as store:
        rec = await store.get("job", "j1")
        if op == "put":
            await store.apply(Put("job", "j1", {"by": "other"}, rec.version, "finished"))
        else:
            await store.apply(Delete("job", "j1"))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _other_process(path: Path, op: str) -> None:
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(OTHER_PROCESS), str(path), op], check=True, timeout=60
    )


async def test_a_write_by_another_process_is_read_at_once_not_the_kept_record(store: SQLiteStore) -> None:
    [mine] = await store.apply(Put("job", "j1", {"by": "me"}, None, "running"))
    assert store._cache  # kept: the next read of j1 does not read the file
    got = await store.get("job", "j1")
    assert got is not None and got.data == {"by": "me"}
    await asyncio.to_thread(_other_process, store.path, "put")
    got = await store.get("job", "j1")
    assert got is not None and got.data == {"by": "other"} and got.version == mine.version + 1
    assert got.status == "finished"
    # a decision on the record still sees the file's truth: a write on the stale version conflicts
    from podium.errors import ConflictError

    with pytest.raises(ConflictError):
        await store.apply(Put("job", "j1", {"by": "me again"}, mine.version, "running"))
    [again] = await store.apply(Put("job", "j1", {"by": "me again"}, got.version, "running"))
    assert (await store.get("job", "j1")) == again._replace(data={"by": "me again"})
    await asyncio.to_thread(_other_process, store.path, "delete")
    assert await store.get("job", "j1") is None


async def test_kept_records_are_copies_held_as_json(store: SQLiteStore) -> None:
    data = {"pair": (1, 2), "nested": {"k": [1]}}
    await store.apply(Put("job", "j1", data, None, "running"))
    data["nested"]["k"].append(2)
    got = await store.get("job", "j1")
    assert got is not None and got.data == {"pair": [1, 2], "nested": {"k": [1]}}
    got.data["nested"]["k"].append(3)
    again = await store.get("job", "j1")
    assert again is not None and again.data == {"pair": [1, 2], "nested": {"k": [1]}}
    await store.apply(Delete("job", "j1"))
    assert await store.get("job", "j1") is None


def test_store_urls_name_the_synchronous_level(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db?synchronous=normal"
    assert sqlite_path(url) == f"{tmp_path}/a.db"
    assert sqlite_synchronous(url) == "NORMAL"
    assert sqlite_synchronous(f"sqlite:///{tmp_path}/a.db") == "FULL"
    store = open_store(url)
    assert isinstance(store, SQLiteStore) and store.synchronous == "NORMAL"
    with pytest.raises(ValueError, match="synchronous='OFF'"):
        sqlite_synchronous("sqlite:///a.db?synchronous=off")
    with pytest.raises(ValueError, match="unknown option 'mode'"):
        sqlite_synchronous("sqlite:///a.db?mode=ro")


def _batch_sizes(store: SQLiteStore) -> list[int]:
    """The size of every batch of calls the store commits from now on (one transaction each)."""
    sizes: list[int] = []
    run_batch = store._run_batch

    def counting(conn: Any, batch: list[Any], **kw: Any) -> None:
        sizes.append(len(batch))
        run_batch(conn, batch, **kw)

    store._run_batch = counting  # type: ignore[method-assign]
    return sizes


async def test_calls_made_in_one_loop_step_commit_together_and_fail_alone(store: SQLiteStore) -> None:
    [a] = await store.apply(Put("job", "a", {"n": 0}, None, "running"))
    sizes = _batch_sizes(store)
    # three calls started together: the first runs at once, the other two at the end of the step, in one
    # transaction where the stale one rolls back alone (calls that need no fsync: one that does commits at
    # once, see the next test)
    first, stale, other = await asyncio.gather(
        store.apply(Put("job", "a", {"n": 1}, a.version, "running"), durable=False),
        store.apply(Put("job", "a", {"n": 2}, a.version, "running"), durable=False),
        store.apply(Put("job", "b", {"n": 3}, None, "running"), durable=False),
        return_exceptions=True,
    )
    from podium.errors import ConflictError

    assert isinstance(stale, ConflictError)
    assert not isinstance(first, BaseException) and not isinstance(other, BaseException)
    got_a, got_b = await store.get("job", "a"), await store.get("job", "b")
    assert got_a is not None and got_a.data == {"n": 1} and got_a.version == a.version + 1
    assert got_b is not None and got_b.data == {"n": 3}
    assert sizes[:2] == [1, 2]


async def test_a_call_that_waits_for_an_fsync_commits_at_once_after_the_deferred_ones(
    store: SQLiteStore,
) -> None:
    """Later in a step, calls that need no fsync wait for its end; one that does commits at once, together
    with those deferred before it (in order), so its fsync can start before the step ends."""
    sizes = _batch_sizes(store)
    results = await asyncio.gather(
        store.apply(Put("job", "x", {"n": 0}, None, "running"), durable=False),  # the step's first: at once
        store.apply(Put("job", "y", {"n": 1}, 0, "running"), durable=False),  # deferred
        store.apply(Put("job", "y", {"n": 2}, 1, "running")),  # durable: now, after the deferred y v1
        store.apply(Put("job", "z", {"n": 3}, None, "running"), durable=False),  # deferred to the end
    )
    assert [r[0].version for r in results] == [1, 1, 2, 1]
    assert sizes == [1, 2, 1]
    got = await store.get("job", "y")
    assert got is not None and got.data == {"n": 2}


async def test_kept_reads_ask_data_version_only_after_a_commit(store: SQLiteStore, tmp_path: Path) -> None:
    """Status polls read kept records: ``PRAGMA data_version`` is asked only when the WAL index header
    changed since the last check by another connection's commit (this store's own commits, begun with the
    header as checked, need none); another process's commit and another store of this process committing
    are both seen by the very next read, in the same loop turn, even after a commit of this store's."""
    await store.apply(Put("job", "j1", {"n": 0}, None, "running"))
    assert store._conn is not None
    checks: list[str] = []
    store._conn.set_trace_callback(lambda sql: checks.append(sql) if "data_version" in sql else None)
    for _ in range(5):
        got = await store.get("job", "j1")
        assert got is not None and got.data == {"n": 0}
    assert len(checks) == 1  # the first read since the store opened; nobody committed since
    await store.apply(Put("job", "j2", {"n": 0}, None, "running"))
    assert (await store.get("job", "j1")) is not None and (await store.get("job", "j2")) is not None
    assert len(checks) == 1  # its own commit, begun with the header as checked: no check

    # another process's commit: seen by the next read
    await asyncio.to_thread(_other_process, store.path, "put")
    got = await store.get("job", "j1")
    assert got is not None and got.data == {"by": "other"}
    assert len(checks) == 2

    # another process's commit, then one of this store's before any read: the read still checks
    [mine] = await store.apply(Put("job", "j1", {"by": "me"}, got.version, "running"))  # kept
    assert (await store.get("job", "j1")) == mine and len(checks) == 2
    await asyncio.to_thread(_other_process, store.path, "put")
    await store.apply(Put("job", "j3", {"n": 0}, None, "running"))
    got = await store.get("job", "j1")
    assert got is not None and got.data == {"by": "other"} and got.version == mine.version + 1
    assert len(checks) == 3

    # another store of this process on the same file commits: seen at once, without yielding
    other = SQLiteStore(store.path, synchronous="NORMAL")
    await other.open()
    try:
        [mine] = await store.apply(Put("job", "j1", {"by": "me"}, got.version, "running"))  # kept again
        got = await store.get("job", "j1")
        assert got == mine
        before = len(checks)
        assert (await store.get("job", "j1")) is not None and len(checks) == before  # nobody committed
        await other.apply(Put("job", "j1", {"by": "neighbour"}, got.version, "running"), durable=False)
        got = await store.get("job", "j1")
        assert got is not None and got.data == {"by": "neighbour"} and len(checks) == before + 1
    finally:
        await other.close()


async def test_peek_answers_a_kept_record_checked_at_that_moment(store: SQLiteStore) -> None:
    """``peek`` (a status poll answered as it is parsed) returns a kept record on disk, and nothing for a
    record another process wrote since (even without a yield in between), or one whose commit is not on
    disk yet."""
    [mine] = await store.apply(Put("job", "j1", {"by": "me"}, None, "running"))
    assert store.peek("job", "j1") == mine._replace(data={"by": "me"})
    assert store.peek("job", "j1") is not None
    assert store.peek("job", "other") is None  # not kept: to be read

    assert store.peek("job", "j1") is not None
    _other_process(store.path, "put")  # no yield since the last peek
    assert store.peek("job", "j1") is None  # another process wrote: read it
    got = await store.get("job", "j1")
    assert got is not None and got.data == {"by": "other"}

    held = HeldFsync(store)  # a durable write whose fsync has not finished: not shown yet
    writing = asyncio.ensure_future(store.apply(Put("job", "j1", {"by": "me again"}, got.version, "running")))
    await held.wait_entered()
    assert store.peek("job", "j1") is None
    held.release.set()
    [again] = await asyncio.wait_for(writing, WAIT_S)
    peeked = store.peek("job", "j1")
    assert peeked is not None and (peeked.data, peeked.version) == ({"by": "me again"}, again.version)


OTHER_ENQUEUE = """
import asyncio, sys
from podium.store import Enqueue, SQLiteStore

async def main(path):
    async with SQLiteStore(path) as store:
        await store.apply(Enqueue("q", "from-other"))

asyncio.run(main(sys.argv[1]))
"""


async def test_a_take_that_finds_nothing_due_runs_no_write_transaction(tmp_path: Path) -> None:
    """Idle workers' takes find nothing: the store sees so with one read, without taking the write lock;
    an item that is due (this process's, another process's, or one enqueued earlier in the same step and
    not yet committed) is still taken."""
    from podium.clock import ManualClock
    from podium.store import Enqueue

    clock = ManualClock(time.time() + 3600)  # ahead of the other process's clock: its item is due here
    store = SQLiteStore(tmp_path / "s.db", clock=clock)
    await store.open()
    try:
        sizes = _batch_sizes(store)
        assert await store.take_now(["q", "r"], owner="w", lease_s=30, limit=1) == []
        await store.apply(Enqueue("q", "later", delay_s=5))
        assert sizes == [1]
        assert await store.take_now(["q"], owner="w", lease_s=30, limit=1) == []  # not due yet
        assert sizes == [1]
        await clock.advance(5)
        [lease] = await store.take_now(["r", "q"], owner="w", lease_s=30, limit=1)
        assert lease.id == "later" and sizes == [1, 1]
        assert await store.take_now(["q"], owner="w", lease_s=30, limit=1) == []  # leased: not due
        assert sizes == [1, 1]

        # enqueued by another process: seen by the read
        await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", textwrap.dedent(OTHER_ENQUEUE), str(store.path)],
            check=True,
            timeout=60,
        )
        [lease] = await store.take_now(["q"], owner="w", lease_s=30, limit=1)
        assert lease.id == "from-other"

        # an enqueue deferred in this step (not committed yet) is taken by a take made after it
        put, added, taken = await asyncio.gather(
            store.apply(Put("job", "j", {}, None, "running"), durable=False),  # the step's first: at once
            store.apply(Enqueue("q", "same-step"), durable=False),  # deferred to the step's end
            store.take_now(["q"], owner="w", lease_s=30, limit=1),
        )
        assert put[0].version == 1 and added == [True] and [lease.id for lease in taken] == ["same-step"]
    finally:
        await store.close()


async def test_counters_are_read_only_by_transactions_that_use_them(tmp_path: Path) -> None:
    """Fence tokens and queue order come from the ``counters`` table, read once by the transaction that
    needs one (most writes need none); tokens keep rising across stores (processes) on one file."""
    from podium.store import Enqueue

    path = tmp_path / "s.db"
    store, other = SQLiteStore(path), SQLiteStore(path)
    await store.open()
    await other.open()
    try:
        assert store._conn is not None
        reads: list[str] = []
        store._conn.set_trace_callback(lambda sql: reads.append(sql) if "FROM counters" in sql else None)
        await store.apply(Put("job", "j", {}, None, "running"))
        assert reads == []
        await store.apply(Enqueue("q", "a"), Enqueue("q", "b"), Enqueue("q", "c"))
        assert len(reads) == 1  # once for the transaction's three
        tokens = []
        for s, id in ((store, "a"), (other, "b"), (store, "c")):
            [lease] = await s.take_now(["q"], owner="w", lease_s=30, limit=1)
            assert lease.id == id  # queue order kept
            tokens.append(lease.token)
        assert tokens == sorted(tokens) and len(set(tokens)) == 3
    finally:
        await other.close()
        await store.close()


async def test_a_take_and_the_claim_made_after_it_in_its_step_commit_as_one_transaction(
    store: SQLiteStore,
) -> None:
    """A take that is its step's first call returns with its transaction open; the claim made after it in
    the same step runs in it and both commit once. A read in between sees the take (it commits first)."""
    from podium.store import Enqueue

    await store.apply(Enqueue("q", "a"), Enqueue("q", "b"), Put("task", "t", {"n": 0}, None, "queued"))
    assert store._conn is not None
    sqls: list[str] = []
    store._conn.set_trace_callback(
        lambda sql: sqls.append(sql) if sql in ("BEGIN IMMEDIATE", "COMMIT") else None
    )
    [lease] = await store.take_now(["q"], owner="w", lease_s=30, limit=1)
    [claimed] = await store.apply(Put("task", "t", {"n": 1}, 1, "running"), durable=False)
    assert sqls == ["BEGIN IMMEDIATE", "COMMIT"]  # one transaction
    assert await store.queue_depth("q") == {"ready": 1, "delayed": 0, "leased": 1}
    got = await store.get("task", "t")
    assert got is not None and got.version == claimed.version == 2 and lease.id == "a"

    await asyncio.sleep(0)  # a new step: the take is its first call
    sqls.clear()
    [lease] = await store.take_now(["q"], owner="w", lease_s=30, limit=1)
    assert sqls == ["BEGIN IMMEDIATE"]  # returned, its transaction open
    assert (await store.get("task", "t")) is not None  # a read: what returned is committed first
    assert sqls == ["BEGIN IMMEDIATE", "COMMIT"] and lease.id == "b"
    assert await store.queue_depth("q") == {"ready": 0, "delayed": 0, "leased": 2}


async def test_next_due_is_a_read_without_a_write_transaction_unless_a_write_of_the_step_is_pending(
    store: SQLiteStore,
) -> None:
    """A long poll asks when its queues' next item is due: a read on the writing connection while it is free
    (no batch committed for it); after a write deferred in the same loop step it runs with that write, and
    sees it."""
    from podium.store import Enqueue

    sizes = _batch_sizes(store)
    assert await store.next_due(["q", "r"]) is None
    assert sizes == []
    await store.apply(Enqueue("q", "later", delay_s=5))
    assert sizes == [1]
    due = await store.next_due(["q", "r"])
    assert due is not None and due > store.clock.now() + 4 and sizes == [1]
    put, added, soon = await asyncio.gather(
        store.apply(Put("job", "j", {}, None, "running"), durable=False),  # the step's first: at once
        store.apply(Enqueue("r", "now"), durable=False),  # deferred to the step's end
        store.next_due(["r"]),  # runs after it, in the same batch
    )
    assert put[0].version == 1 and added == [True]
    assert soon is not None and soon <= store.clock.now()
    assert sizes == [1, 1, 2]


async def test_callers_of_a_sync_go_on_in_the_round_that_delivers_it() -> None:
    """The syncer hands a sync's outcomes to the loop in one callback; the calls that waited go on inside it
    (each in its own context), not a loop round later; resolved anywhere else, futures wake as usual."""
    from podium.store import sqlite_sync

    loop = asyncio.get_running_loop()
    order: list[Any] = []
    seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="none")

    async def waiter(fut: asyncio.Future[int], name: str) -> None:
        seen.set(name)
        order.append((await fut, seen.get()))

    async def deliver(via_run_calls: bool) -> None:
        fut: asyncio.Future[int] = loop.create_future()
        task = loop.create_task(waiter(fut, "waiter"))
        await asyncio.sleep(0)  # the task now waits on fut
        delivered = loop.create_future()

        def in_callback() -> None:
            items = [(fut, loop, 7, None)]
            if via_run_calls:
                sqlite_sync._run_calls([(sqlite_sync._resolve, (items,))])
            else:
                sqlite_sync._resolve(items)
            order.append("callback returned")
            delivered.set_result(None)

        loop.call_soon_threadsafe(in_callback)
        await asyncio.wait_for(delivered, WAIT_S)
        await asyncio.wait_for(task, WAIT_S)

    await deliver(via_run_calls=True)
    assert order == [(7, "waiter"), "callback returned"]
    order.clear()
    await deliver(via_run_calls=False)
    assert order == ["callback returned", (7, "waiter")]


async def test_a_failing_done_callback_run_by_the_sync_goes_to_the_loops_handler() -> None:
    from podium.store import sqlite_sync

    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        first: asyncio.Future[int] = loop.create_future()
        second: asyncio.Future[int] = loop.create_future()
        got: list[int] = []

        def boom(_: asyncio.Future[int]) -> None:
            raise ValueError("boom")

        first.add_done_callback(boom)
        second.add_done_callback(lambda f: got.append(f.result()))
        done = loop.create_future()

        def in_callback() -> None:
            sqlite_sync._run_calls(
                [(sqlite_sync._resolve, ([(first, loop, 1, None), (second, loop, 2, None)],))]
            )
            done.set_result(None)

        loop.call_soon(in_callback)
        await asyncio.wait_for(done, WAIT_S)
        assert got == [2]
        assert first.result() == 1
        assert [type(e["exception"]) for e in errors] == [ValueError]
    finally:
        loop.set_exception_handler(None)


async def test_callbacks_left_when_one_interrupts_the_sync_still_run_on_the_loop() -> None:
    from podium.store import sqlite_sync

    loop = asyncio.get_running_loop()
    first: asyncio.Future[int] = loop.create_future()
    second: asyncio.Future[int] = loop.create_future()
    got: list[int] = []
    interrupted = loop.create_future()

    def interrupt(_: asyncio.Future[int]) -> None:
        raise KeyboardInterrupt

    first.add_done_callback(interrupt)
    second.add_done_callback(lambda f: got.append(f.result()))

    def in_callback() -> None:
        try:
            sqlite_sync._run_calls(
                [(sqlite_sync._resolve, ([(first, loop, 1, None), (second, loop, 2, None)],))]
            )
        except KeyboardInterrupt:
            interrupted.set_result(got[:])

    loop.call_soon(in_callback)
    assert await asyncio.wait_for(interrupted, WAIT_S) == []  # not run yet when the interrupt came
    await asyncio.sleep(0)
    assert got == [2]


@pytest.fixture
def sync_helper() -> Iterator[None]:
    from podium.store.sqlite_sync import sync_in_helper_process

    sync_in_helper_process(True)
    try:
        yield
    finally:
        sync_in_helper_process(False)


@pytest.mark.usefixtures("sync_helper")
async def test_a_sync_helper_process_makes_writes_durable_and_is_reaped_on_close(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "helper.db")
    await store.open()
    assert store._syncer is not None
    helper = store._syncer._helper
    assert helper is not None and helper.proc.poll() is None
    await store.apply(Put("job", "a", {"n": 1}, None, "pending"))
    assert store._syncer.synced >= 1 and helper.sent >= 1
    writes = await asyncio.gather(
        *(store.apply(Put("job", f"b{i}", {"n": i}, None, "pending")) for i in range(20))
    )
    assert len(writes) == 20 and store._syncer.synced == helper.sent
    await store.close()
    assert helper.proc.returncode == 0
    # what it acknowledged is in the file: read back by a new store
    again = SQLiteStore(tmp_path / "helper.db")
    await again.open()
    try:
        assert (await again.get("job", "b19")) is not None
    finally:
        await again.close()


@pytest.mark.usefixtures("sync_helper")
async def test_a_dead_sync_helper_fails_the_waiting_write_and_every_call_after(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "dead.db")
    await store.open()
    try:
        assert store._syncer is not None and store._syncer._helper is not None
        await store.apply(Put("job", "a", {"n": 1}, None, "pending"))
        helper = store._syncer._helper
        helper.proc.kill()
        helper.proc.wait()
        with pytest.raises(StoreError):
            await asyncio.wait_for(store.apply(Put("job", "b", {"n": 2}, None, "pending")), WAIT_S)
        with pytest.raises(StoreError):
            await store.apply(Put("job", "c", {"n": 3}, None, "pending"))
    finally:
        with contextlib.suppress(StoreError):
            await store.close()


@pytest.mark.usefixtures("sync_helper")
async def test_the_sync_helper_outlives_a_stop_signal_while_the_server_stops(tmp_path: Path) -> None:
    """A stop signal sent to every process (Ctrl-C, systemd's group stop) must not end the helper before the
    server's last writes: it ends when its input closes."""
    import signal

    store = SQLiteStore(tmp_path / "signals.db")
    await store.open()
    assert store._syncer is not None and store._syncer._helper is not None
    helper = store._syncer._helper
    await store.apply(Put("job", "a", {"n": 1}, None, "pending"))
    helper.proc.send_signal(signal.SIGINT)
    helper.proc.send_signal(signal.SIGTERM)
    await store.apply(Put("job", "b", {"n": 2}, None, "pending"))  # durable: the helper answered
    assert helper.proc.poll() is None
    await store.close()
    assert helper.proc.returncode == 0
