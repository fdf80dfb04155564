"""PostgreSQL only: several store instances on one database (as several podium processes are), group
commit, URL options and the schema check."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from podium.clock import ManualClock
from podium.errors import ConfigError, ConflictError, LeaseLostError, SchemaMismatchError, StoreError
from podium.store import Ack, Append, Delete, Dequeue, Enqueue, Put, Wake
from podium.store.pg_admin import DEFAULT_POOL_SIZE, parse_url
from podium.store.postgres import PostgresStore
from tests.conformance.conftest import StoreFactory


@pytest.fixture(params=["postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_a_take_wakes_on_an_enqueue_from_another_instance(
    make_store: StoreFactory, clock: ManualClock
) -> None:
    # Given two instances on one schema, and a taker waiting on the first (the manual clock never moves,
    # so only a notification can wake it: no polling)
    async with make_store() as a, make_store() as b:
        waiter = asyncio.create_task(a.take("q", owner="w", lease_s=5, wait_s=60))

        async def armed() -> None:
            while clock.next_deadline is None:
                await asyncio.sleep(0.001)

        await asyncio.wait_for(armed(), timeout=10)
        assert not waiter.done()
        # When the second instance enqueues
        await b.enqueue("q", "t", {"from": "b"})
        # Then the first wakes at once with the item
        leases = await asyncio.wait_for(waiter, timeout=10)
        assert [(lease.id, lease.payload) for lease in leases] == [("t", {"from": "b"})]


async def test_a_nack_on_one_instance_wakes_a_taker_on_another(
    make_store: StoreFactory, clock: ManualClock
) -> None:
    async with make_store() as a, make_store() as b:
        await b.enqueue("q", "t", {})
        [lease] = await b.take("q", owner="w1", lease_s=30)
        waiter = asyncio.create_task(a.take("q", owner="w2", lease_s=5, wait_s=60))
        while clock.next_deadline is None:  # the waiter armed its timer for the lease's expiry
            await asyncio.sleep(0.001)
        await b.nack(lease)
        [again] = await asyncio.wait_for(waiter, timeout=10)
        assert again.id == "t" and again.owner == "w2" and again.attempts == 2


async def test_concurrent_takers_on_three_instances_never_share_an_item(make_store: StoreFactory) -> None:
    # Given 150 items and three instances, each with four takers racing
    async with make_store() as a, make_store() as b, make_store() as c:
        for start in range(0, 150, 50):
            await a.apply(*[Enqueue("q", f"t{i:03d}", {"i": i}) for i in range(start, start + 50)])
        taken: list[str] = []

        async def taker(store: PostgresStore, name: str) -> None:
            while True:
                leases = await store.take_now(["q"], owner=name, lease_s=60, limit=3)
                if not leases:
                    return
                taken.extend(lease.id for lease in leases)
                for lease in leases:
                    await store.ack(lease)

        stores = [s for s in (a, b, c) if isinstance(s, PostgresStore)]
        await asyncio.wait_for(
            asyncio.gather(*(taker(s, f"w{n}-{k}") for n, s in enumerate(stores) for k in range(4))),
            timeout=50,
        )
        # Then every item went to exactly one taker
        assert len(taken) == 150 and len(set(taken)) == 150
        assert await a.queue_depth("q") == {"ready": 0, "delayed": 0, "leased": 0}


async def test_group_commit_keeps_each_call_all_or_nothing(make_store: StoreFactory) -> None:
    # Given a store whose pool allows one writer, so concurrent calls share transactions
    async with _same_schema(make_store, pool_size=3) as store:
        await store.put("job", "taken", {})

        async def call(i: int) -> str:
            if i % 3 == 0:  # a call that conflicts: its history line must not be written either
                await store.apply(Append(f"j{i}", "made"), Put("job", "taken", {"i": i}, expected_version=0))
            else:
                await store.apply(Put("job", f"j{i}", {"i": i}, expected_version=0), Append(f"j{i}", "made"))
            return f"j{i}"

        results = await asyncio.gather(*(call(i) for i in range(30)), return_exceptions=True)
        # Then the conflicting calls failed alone and every other call committed whole
        assert all(isinstance(r, ConflictError) for i, r in enumerate(results) if i % 3 == 0)
        assert sorted(r for r in results if isinstance(r, str)) == sorted(f"j{i}" for i in range(30) if i % 3)
        assert await store.count("job") == 21
        made = {e.subject_id for e in await store.history(event="made")}
        assert made == {f"j{i}" for i in range(30) if i % 3}


def _same_schema(make_store: StoreFactory, **options: Any) -> PostgresStore:
    """A store of its own (``options``: its pool, its group commit) on the schema and clock of the test's store."""
    base = make_store()
    assert isinstance(base, PostgresStore)
    return PostgresStore(base.url, clock=base.clock, **options)


async def _every_statement(store: PostgresStore) -> list[str]:
    """A list that every statement the store's connections send from now on is appended to (the pool filled
    to its size first, so that no connection opened later goes uncounted)."""
    sent: list[str] = []
    pool = store._require_pool()
    await store._return_spares(pool)  # the connections it keeps back, too
    held = [await pool.acquire() for _ in range(store.target.pool_size)]
    for conn in held:
        conn.add_query_logger(lambda logged: sent.append(logged.query))
    for conn in held:
        await pool.release(conn)
    return sent


async def test_a_planned_batch_is_four_statements_whatever_it_writes(make_store: StoreFactory) -> None:
    # Given a store whose pool allows one writer, every statement its connections send counted
    async with _same_schema(make_store, pool_size=3) as store:
        sent = await _every_statement(store)

        async def batch(n: int) -> list[list[Any]]:
            """One batch that updates, deletes and creates records, acks, removes and adds items, appends."""
            await store.put("job", f"old{n}", {})
            await store.put("job", f"gone{n}", {})
            await store.enqueue(f"q{n}", f"done{n}", {})
            [lease] = await store.take(f"q{n}", owner="w", lease_s=30)
            await store.enqueue(f"q{n}", f"dropped{n}", {})
            sent.clear()
            return await asyncio.gather(
                store.apply(
                    Put("job", f"old{n}", {"n": n}, expected_version=1), Ack(lease), Append("o", "moved")
                ),
                store.apply(Delete("job", f"gone{n}"), Dequeue(f"q{n}", f"dropped{n}")),
                store.apply(
                    Put("job", f"new{n}", {}, expected_version=0), Enqueue(f"q{n}", f"next{n}", {"n": n})
                ),
                store.apply(
                    Enqueue(f"q{n}", f"mine{n}", {}, lease_owner="w", lease_s=30), Append("n", "made")
                ),
            )

        await batch(1)  # (asyncpg reads the statements' types once per connection)
        # When one such batch runs
        results = await batch(2)
        # Then it took four statements: BEGIN, the rows' locks, the writes with the history lines, COMMIT
        assert len(sent) == 4, [q[:50] for q in sent]
        assert sent[0].startswith("BEGIN;") and sent[-1] == "COMMIT"
        # and every call did what it says
        assert results[0][0].version == 2 and results[1] == [True, True] and results[2][1] is True
        mine = results[3][0]
        assert mine is not None and mine.token > 0
        assert (await store.get("job", "old2")).data == {"n": 2}  # type: ignore[union-attr]
        assert await store.get("job", "gone2") is None
        assert await store.get("job", "new2") is not None
        assert await store.queue_depth("q2") == {"ready": 1, "delayed": 0, "leased": 1}
        taken = await store.take("q2", owner="w2", lease_s=30, limit=5)
        assert [(t.id, t.payload) for t in taken] == [("next2", {"n": 2})]
        assert [e.event for e in await store.history(subject_id="o")] == ["moved", "moved"]


async def test_a_group_commit_plans_its_statements_once(make_store: StoreFactory) -> None:
    """A writer's transaction uses generic plans (``SET LOCAL plan_cache_mode`` in its BEGIN): the batch
    statements are not planned again for every execution."""
    async with _same_schema(make_store, pool_size=3) as store:
        # Given planned batches (several calls each) run again and again
        for n in range(8):
            await asyncio.gather(
                store.apply(Put("job", f"a{n}", {}), Enqueue("q", f"a{n}"), Append(f"a{n}", "made")),
                store.apply(Put("job", f"b{n}", {}), Append(f"b{n}", "made")),
                store.apply(Put("job", f"c{n}", {}), Append(f"c{n}", "made")),
            )
        # Then every connection's batch statements were planned generically, never per execution
        rows = await _plans(store, "WITH r AS", "WITH rd AS")
        assert rows and sum(r[0] for r in rows) >= 8, rows
        assert sum(r[1] for r in rows) == 0, rows


async def test_the_hot_statements_find_rows_by_key_whatever_plan_postgres_keeps(
    make_store: StoreFactory,
) -> None:
    # Given a new schema whose tables hold a few rows and were never analyzed (where the generic plans
    # PostgreSQL keeps for a connection's life scanned whole tables, or a whole kind through a secondary
    # index, per statement)
    from podium.store import pg_sql

    async with make_store() as store:
        assert isinstance(store, PostgresStore)
        for n in range(12):
            await store.apply(
                Put("job", f"j{n}", {}, status="running"),
                Put("task", f"t{n}", {}, status="open", group=f"j{n}"),
                Enqueue("tasks", f"t{n}:1", {}),
                Append(f"j{n}", "made"),
            )
        records, items = (
            "text,text,int,text,text,text,float8,float8",
            "text,text,int,text,int,float8,text,float8",
        )
        statements = {  # name: (SQL, parameter types, arguments)
            "lock": (pg_sql._LOCK_ROWS, "text[],text[],text[],text[]", "'{job}','{j1}','{tasks}','{t1:1}'"),
            "get_many": (pg_sql._GET_MANY, "text[],text[]", "'{task}','{t1}'"),
            "write": (
                pg_sql._WRITE_ROWS,
                ",".join(
                    f"{t}[]"
                    for t in f"tid,tid,int,text,text,text,float8,float8,{records},tid,{items}".split(",")
                ),
                ",".join(["'{}'"] * 25),
            ),
            "write_history": (
                pg_sql._WRITE_ROWS_HISTORY,
                ",".join(
                    f"{t}[]"
                    for t in f"tid,tid,int,text,text,text,float8,float8,{records},tid,{items}".split(",")
                )
                + ",text[],text[],text[],float8[],text[],int4,int4[],text,text[]",
                ",".join(["'{}'"] * 25) + ",'{j1}','{e}','{NULL}','{0}','{\"{}\"}',1,'{1}','c','{}'",
            ),
            "blind": (
                pg_sql._BLIND_WRITE,
                "text[],text[],int[],text[],text[],int8[],float8[],"
                "text[],text[],int[],text[],text[],text[],float8[],"
                + ",".join(f"{t}[]" for t in f"{records},{items}".split(","))
                + ",text[],text[],text[],float8[],text[],int4,int4[],text,text[],bool",
                "'{job}','{j1}','{1}','{tasks}','{t1:1}','{1}','{0}',"
                "'{job}','{j1}','{2}','{x}','{g}','{\"{}\"}','{1}',"
                + ",".join(["'{}'"] * 21)
                + ",1,'{}','c','{}',true",
            ),
            "take": (pg_sql._TAKE_ONE, "text,float8,int,text,float8", "'tasks',0,4,'w',1"),
            "take_fetch": (
                pg_sql._TAKE_MANY_FETCH_GROUP,
                "text[],float8,int,text,float8,text,text",
                "'{tasks,mine}',0,4,'w',1,'task','job'",
            ),
            "take_many": (pg_sql._TAKE_MANY, "text[],float8,int,text,float8", "'{tasks,mine}',0,4,'w',1"),
            "get": (pg_sql._GET_ONE, "text,text", "'task','t1'"),
            "next_due": (pg_sql._NEXT_DUE, "text[]", "'{tasks,mine}'"),
            "put": (
                pg_sql._PUT_VERSION,
                "text,text,text,text,text,float8,int",
                "'task','t1','x',NULL,'{}',1,1",
            ),
            "ack": (
                f"DELETE FROM queue WHERE {pg_sql._HELD}",
                "text,text,int,float8",
                "'tasks','t1:1',1,0",
            ),
        }
        async with store._require_pool().acquire() as conn:
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            for name, (sql, types, args) in statements.items():
                # When PostgreSQL plans each of them once for all executions (a generic plan)
                async with conn.transaction():
                    await conn.execute(f"PREPARE hot_{name}({types}) AS {sql}")
                    plan = "\n".join(
                        row[0] for row in await conn.fetch(f"EXPLAIN EXECUTE hot_{name}({args})")
                    )
                    await conn.execute(f"DEALLOCATE hot_{name}")
                # Then it finds rows by primary key or ctid: no sequential scan, no secondary index serving
                # a key lookup
                assert "Seq Scan" not in plan, (name, plan)
                assert "ix_records_group" not in plan and "ix_records_status" not in plan, (name, plan)
                if name == "next_due":  # its index, for the first entry of each queue
                    assert "Limit" in plan and "Bitmap" not in plan, (name, plan)
                else:
                    assert "ix_queue_due" not in plan, (name, plan)
                if name in ("lock", "blind", "get_many", "get", "take_fetch"):
                    assert "records_pkey" in plan, (name, plan)


async def test_a_lone_versioned_put_is_one_statement_and_its_own_transaction(
    make_store: StoreFactory,
) -> None:
    # Given a store whose every statement is counted, and a record at version 1
    async with _same_schema(make_store, pool_size=3) as store:
        sent = await _every_statement(store)
        await store.put("task", "t", {"n": 0})
        await store.put("task", "t", {"n": 1}, expected_version=1)  # (asyncpg reads the types once)
        # When a lone call puts it under its version, durably or not
        sent.clear()
        durable = (await store.apply(Put("task", "t", {"n": 2}, expected_version=2)))[0]
        fast = (await store.apply(Put("task", "t", {"n": 3}, expected_version=3), durable=False))[0]
        # Then each was one statement, no BEGIN or COMMIT, and wrote what it says
        assert len(sent) == 2 and all(q.startswith("UPDATE records") for q in sent), sent
        assert (durable.version, fast.version) == (3, 4)
        assert (await store.get("task", "t")).data == {"n": 3}  # type: ignore[union-attr]
        # and a stale version is refused with the version found, changing nothing
        with pytest.raises(ConflictError) as refused:
            await store.apply(Put("task", "t", {"n": 9}, expected_version=3), durable=False)
        assert refused.value.actual == 4
        with pytest.raises(ConflictError):
            await store.apply(Put("task", "absent", {}, expected_version=1))
        assert (await store.get("task", "t")).data == {"n": 3}  # type: ignore[union-attr]


async def test_a_batch_that_removes_an_item_and_adds_it_again_leaves_the_new_one(
    make_store: StoreFactory,
) -> None:
    # Given a store whose pool allows one writer, and an item q/a leased to a worker
    async with _same_schema(make_store, pool_size=3) as store:
        await store.enqueue("q", "a", {"n": 1})
        [lease] = await store.take("q", owner="w", lease_s=30)
        # When one batch acks it and enqueues q/a again (leased to another owner), next to another call
        again, other = await asyncio.gather(
            store.apply(Ack(lease), Enqueue("q", "a", {"n": 2}, lease_owner="w2", lease_s=30)),
            store.apply(Put("job", "z", {}), Enqueue("q", "b", {"n": 3})),
        )
        # Then q/a is the new item, under a new lease, and the other call's item is there too
        new_lease = again[1]
        assert new_lease is not None and new_lease.token > lease.token and new_lease.payload == {"n": 2}
        assert other[1] is True
        assert await store.queue_depth("q") == {"ready": 1, "delayed": 0, "leased": 1}
        await store.ack(new_lease)  # the token the batch returned is the one the store holds
        [b] = await store.take("q", owner="w", lease_s=30)
        assert (b.id, b.payload) == ("b", {"n": 3})
        with pytest.raises(LeaseLostError):
            await store.ack(lease)


async def test_a_store_at_another_schema_version_refuses_to_open(make_store: StoreFactory) -> None:
    async with make_store() as store:
        assert await store.schema_version() == "0002"
        assert isinstance(store, PostgresStore)
        await store._fetch("UPDATE alembic_version SET version_num = '0000'")
    with pytest.raises(SchemaMismatchError, match="podium db upgrade --store postgresql://"):
        await make_store().open()


async def test_calls_on_a_closed_store_fail_clearly(make_store: StoreFactory) -> None:
    store = make_store()
    with pytest.raises(StoreError, match="not open"):
        await store.get("job", "a")


def test_url_options() -> None:
    target = parse_url("postgresql://u@h:5432/db?schema=lab_1&pool_size=4&sslmode=disable")
    assert target == ("postgresql://u@h:5432/db?sslmode=disable", "lab_1", 4)
    assert parse_url("postgres://h/db").pool_size == DEFAULT_POOL_SIZE
    with pytest.raises(ConfigError, match="schema="):
        parse_url("postgresql://h/db?schema=x;drop")
    with pytest.raises(ConfigError, match="pool_size="):
        parse_url("postgresql://h/db?pool_size=1")


async def test_a_batch_that_loses_an_insert_race_reruns_call_by_call(make_store: StoreFactory) -> None:
    import asyncpg

    async with _same_schema(make_store, pool_size=3) as store:  # one writer: calls batch
        # Given another session that has inserted job/x and not committed yet
        other = await asyncpg.connect(store.target.dsn, server_settings=store.target.server_settings())
        try:
            tx = other.transaction()
            await tx.start()
            await other.execute(
                "INSERT INTO records(kind, id, version, data, created_at, updated_at)"
                " VALUES ('job', 'x', 1, '{\"by\": \"other\"}', 0, 0)"
            )
            # When one batch creates y0, x and y2 (its insert of x waits for the other session)
            batch = asyncio.gather(
                *(
                    store.apply(Put("job", name, {"by": "batch"}, expected_version=0), Append(name, "made"))
                    for name in ("y0", "x", "y2")
                ),
                return_exceptions=True,
            )

            async def insert_waits() -> None:
                query = (
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'podium'"
                    " AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO records%'"
                )
                while not (await store._fetch(query))[0][0]:  # (`other` would see one snapshot of it)
                    await asyncio.sleep(0.01)  # waiting on another process: nothing to wait on here

            await asyncio.wait_for(insert_waits(), timeout=20)
            await tx.commit()
            y0, x, y2 = await asyncio.wait_for(batch, timeout=20)
        finally:
            await other.close()
        # Then the batch ran again call by call: only the create of x failed, and changed nothing
        assert isinstance(x, ConflictError) and x.actual == 1
        assert isinstance(y0, list) and isinstance(y2, list)
        got = await store.get("job", "x")
        assert got is not None and got.data == {"by": "other"}
        assert {e.subject_id for e in await store.history(event="made")} == {"y0", "y2"}


async def test_takers_still_wake_after_the_listen_connection_is_cut(
    make_store: StoreFactory, clock: ManualClock
) -> None:
    async with make_store() as a, make_store() as b:
        assert isinstance(a, PostgresStore) and isinstance(b, PostgresStore)
        # Given the server cuts the first instance's LISTEN connection
        old = a._listener
        assert old is not None
        await b._fetch("SELECT pg_terminate_backend($1)", old.get_server_pid())

        async def listening_again() -> None:
            while a._listener is None or a._listener is old:
                await asyncio.sleep(0.01)  # the reconnect is another connection's work: nothing to wait on

        await asyncio.wait_for(listening_again(), timeout=20)
        # Then a taker on it still wakes at once on an enqueue from the other instance
        waiter = asyncio.create_task(a.take("q", owner="w", lease_s=5, wait_s=60))
        while clock.next_deadline is None:
            await asyncio.sleep(0.001)
        await b.enqueue("q", "t", {})
        assert [lease.id for lease in await asyncio.wait_for(waiter, timeout=10)] == ["t"]


async def test_instances_starting_together_on_a_new_schema_create_it_once(make_store: StoreFactory) -> None:
    stores = [make_store() for _ in range(3)]
    await asyncio.wait_for(asyncio.gather(*(s.open() for s in stores)), timeout=50)
    try:
        assert [await s.schema_version() for s in stores] == ["0002"] * 3
        await stores[0].put("job", "a", {})
        assert await stores[2].get("job", "a") is not None
    finally:
        for s in stores:
            await s.close()


@contextlib.asynccontextmanager
async def _holding_an_insert(store: PostgresStore, id: str) -> AsyncIterator[Any]:
    """Another session that inserted the record ``("job", id)`` in a transaction it keeps open (yielded: the
    row's key stays locked until the test rolls it back); the session is closed at the end."""
    import asyncpg

    other = await asyncpg.connect(store.target.dsn, server_settings=store.target.server_settings())
    try:
        tx = other.transaction()
        await tx.start()
        await other.execute(
            "INSERT INTO records(kind, id, version, data, created_at, updated_at) VALUES ('job', $1, 1, '{}', 0, 0)",
            id,
        )
        yield tx
    finally:
        await other.close()


async def test_a_write_cut_off_by_the_server_fails_cleanly_and_the_next_one_works(
    make_store: StoreFactory,
) -> None:

    async with make_store() as store:
        assert isinstance(store, PostgresStore)
        # Given a write waiting on a row another session holds
        async with _holding_an_insert(store, "x") as tx:
            write = asyncio.ensure_future(
                store.apply(Put("job", "x", {}, expected_version=0), Append("x", "made"))
            )
            query = (
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'podium'"
                " AND wait_event_type = 'Lock'"
                " AND (query LIKE 'INSERT INTO records%' OR query LIKE 'WITH lr AS%')"  # planned, or blind
            )

            async def waiting_pid() -> int:
                while not (rows := await store._fetch(query)):
                    await asyncio.sleep(0.01)  # waiting on another process: nothing to wait on here
                return int(rows[0][0])

            pid = await asyncio.wait_for(waiting_pid(), timeout=20)
            # When the server terminates that connection mid-transaction
            await store._fetch("SELECT pg_terminate_backend($1)", pid)
            # Then the call fails with a StoreError, nothing of it is written, and the next call works
            with pytest.raises(StoreError):
                await asyncio.wait_for(write, timeout=20)
            await tx.rollback()
        assert await store.get("job", "x") is None and await store.history("x") == []
        await store.apply(Put("job", "x", {"again": True}, expected_version=0), Append("x", "made"))
        got = await store.get("job", "x")
        assert got is not None and got.data == {"again": True}


async def test_without_group_commit_each_call_is_its_own_transaction(make_store: StoreFactory) -> None:
    async with _same_schema(make_store, group_commit=False) as store:
        await store.put("job", "a", {}, expected_version=0)
        results = await asyncio.gather(
            *(store.put("job", "a", {"n": n}, expected_version=1) for n in range(5)), return_exceptions=True
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        assert all(isinstance(r, ConflictError) for r in results if isinstance(r, BaseException))


async def test_a_wake_on_one_instance_wakes_a_watcher_on_another(make_store: StoreFactory) -> None:
    async with make_store() as a, make_store() as b:
        watcher = b.watch("job-end:j1")
        # alone and in a group-committed batch with other calls
        await asyncio.gather(
            a.apply(Put("job", "j1", {}, status="finished"), Wake("job-end:j1")),
            *(a.put("job", f"x{i}", {}) for i in range(5)),
        )
        await asyncio.wait_for(watcher, timeout=5)  # through NOTIFY: the manual clock never moves
        again = b.watch("job-end:j2")
        await a.apply(Wake("job-end:j2"))
        await asyncio.wait_for(again, timeout=5)


async def _lock_wait(store: PostgresStore, query_start: str) -> None:
    """Wait until a session of this schema's stores waits on a lock in a statement starting so."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'podium'"
        " AND wait_event_type = 'Lock' AND query LIKE $1"
    )

    async def waits() -> None:
        while not (await store._fetch(query, query_start + "%"))[0][0]:
            await asyncio.sleep(0.01)  # waiting on another process: nothing to wait on here

    await asyncio.wait_for(waits(), timeout=20)


async def test_history_seq_follows_commit_order_when_a_write_waits_on_a_row(make_store: StoreFactory) -> None:
    """Two instances append to one job's history; the first one's transaction waits on a row another
    session holds. Its history line is numbered when it commits, after the second's: a reader never sees a
    lower seq of a subject appear after a higher one."""
    import asyncpg

    async with make_store() as a, make_store() as b:
        assert isinstance(a, PostgresStore)
        await a.put("job", "held", {})
        other = await asyncpg.connect(a.target.dsn, server_settings=a.target.server_settings())
        try:
            tx = other.transaction()
            await tx.start()
            await other.execute("SELECT 1 FROM records WHERE kind = 'job' AND id = 'held' FOR UPDATE")
            # Given A's write of (history line, the held row) waiting on the row
            first = asyncio.ensure_future(a.apply(Append("j", "first"), Put("job", "held", {"by": "a"})))
            await _lock_wait(a, "INSERT INTO records")
            # When B appends to the same subject and commits meanwhile
            [second] = await b.apply(Append("j", "second"))
            seen = await b.history("j")
            await tx.commit()
            [entry, _] = await asyncio.wait_for(first, timeout=20)
        finally:
            await other.close()
        # Then the line committed later has the higher seq
        assert [e.event for e in seen] == ["second"]
        assert entry.seq > second.seq
        assert [e.event for e in await a.history("j")] == ["second", "first"]
        assert [e.event for e in await a.history("j", after_seq=second.seq)] == ["first"]


@pytest.mark.parametrize("blind", [True, False], ids=["blind", "read-first"])
async def test_a_planned_batch_numbers_its_lines_after_its_writes_waited(
    make_store: StoreFactory, blind: bool
) -> None:
    """A planned batch writes its rows and its history lines in one statement: an insert there that waits on
    another session's uncommitted insert of the same key waits before the batch draws any seq, so a line of
    the same subject committed meanwhile by another instance has the lower seq. Both ways of planning: from
    what the operations expect (every put names its version: one statement, no read first), and from the
    rows read first (a put that names no version)."""

    async with make_store() as a, make_store() as b:
        assert isinstance(a, PostgresStore)
        async with _holding_an_insert(a, "x") as tx:
            # Given A's batch (five operations: planned) inserting x, waiting on the other's insert of x
            ops = [Put("job", f"y{i}", {}, expected_version=0 if blind or i else None) for i in range(3)]
            first = asyncio.ensure_future(
                a.apply(Append("j", "first"), Put("job", "x", {"by": "a"}, expected_version=0), *ops)
            )
            await _lock_wait(a, "WITH lr" if blind else "WITH rd")
            # When B appends to the same subject and commits meanwhile (not held up by A's batch), and the
            # other session gives up x
            [second] = await asyncio.wait_for(b.apply(Append("j", "second")), timeout=10)
            await tx.rollback()
            [entry, made, *_] = await asyncio.wait_for(first, timeout=20)
        # Then A's line, drawn after its insert waited, has the higher seq
        assert made.version == 1 and made.data == {"by": "a"}
        assert entry.seq > second.seq
        assert [e.event for e in await a.history("j")] == ["second", "first"]


async def test_a_subject_s_history_waits_for_an_uncommitted_line_of_it(make_store: StoreFactory) -> None:
    """Another instance has drawn a seq for subject j and not committed yet (it holds j's lock, as every
    store does from its history insert to its commit): a line for j waits for that commit, so the numbers
    of j's lines are visible in order. A line for another subject does not wait."""
    import asyncpg

    from podium.store.postgres import subject_lock

    async with make_store() as a, make_store() as b:
        assert isinstance(a, PostgresStore)
        other = await asyncpg.connect(a.target.dsn, server_settings=a.target.server_settings())
        try:
            tx = other.transaction()
            await tx.start()
            pending = await other.fetchval(
                "WITH l AS (SELECT pg_advisory_xact_lock($1, $2)) INSERT INTO history"
                "(subject_id, event, status, ts, data) SELECT 'j', 'pending', NULL, 0, '{}' FROM l RETURNING seq",
                a.lock_class,
                subject_lock("j"),
            )
            # When B appends for j (alone, and in a group-committed batch)
            later = asyncio.ensure_future(
                asyncio.gather(
                    b.apply(Append("j", "later")), b.apply(Append("j", "later2"), Put("job", "x", {}))
                )
            )
            # a history insert: "WITH locked ..." alone, "WITH rd ..." with a batch's writes
            await _lock_wait(a, "WITH ")
            # a line for another subject commits meanwhile
            await asyncio.wait_for(b.apply(Append("k", "free")), timeout=10)
            assert not later.done()
            await tx.commit()
            results = await asyncio.wait_for(later, timeout=20)
        finally:
            await other.close()
        seqs = [r[0].seq for r in results]
        assert all(s > pending for s in seqs)
        events = [e.event for e in await a.history("j")]
        assert events[0] == "pending" and sorted(events[1:]) == ["later", "later2"]


async def test_many_wake_ups_of_one_commit_reach_another_instance(make_store: StoreFactory) -> None:
    """A commit's wake-ups travel packed, several names per notification (and several notifications when
    they outgrow one payload): every watcher on the other instance wakes."""
    async with make_store() as a, make_store() as b:
        names = [f"job-end:{i:04d}-{'x' * 40}" for i in range(300)]  # ~15 kB of names
        watchers = [b.watch(name) for name in names]
        await a.apply(Put("job", "j", {}), *(Wake(name) for name in names))
        await asyncio.wait_for(asyncio.gather(*watchers), timeout=10)
        queued = b.watch("q")
        await a.apply(Enqueue("q", "t1"), Append("j", "e"))  # the wake-up rides in the history insert
        await asyncio.wait_for(queued, timeout=10)


async def test_the_store_s_statements_never_sort_to_find_a_row_but_listings_may(
    make_store: StoreFactory,
) -> None:
    """The pool's connections run with ``enable_sort = off``: a key probe or a take is an ordered index walk,
    never another index's rows read and sorted (the plan PostgreSQL kept for a connection once a table that
    looked tiny grew, each probe reading every row of the kind or queue). Listings and history pages, whose
    best plan may sort, run in a transaction of their own with sorting on, and come back in order."""
    async with make_store() as store:
        assert isinstance(store, PostgresStore)
        # Given records and history lines
        for n in range(5):
            await store.apply(
                Put("job", f"j{n}", {}, status="done" if n % 2 else "running"), Append(f"j{n}", "made")
            )
        # Then the store's own statements run without sorting, its listings and history pages with it
        setting = "SELECT current_setting('enable_sort')"
        assert (await store._fetch(setting))[0][0] == "off"
        assert (await store._fetch("SELECT current_setting('jit')"))[0][0] == "off"  # see PostgresStore.open
        assert (await store._fetch_sorted(setting))[0][0] == "on"
        listed = await store.list("job", status=["done", "running"], descending=True)
        assert [r.id for r in listed] == ["j4", "j3", "j2", "j1", "j0"]
        assert [e.subject_id for e in await store.history(event="made")] == [f"j{n}" for n in range(5)]
        # and a connection back in the pool holds no transaction of theirs
        async with store._require_pool().acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval(setting) == "off"


async def _plans(store: PostgresStore, *starts: str) -> list[tuple[int, int]]:
    """``(generic plans, custom plans)`` of each statement prepared on the store's connections that starts
    with one of ``starts`` (PostgreSQL's own counts of each prepared statement's executions)."""
    pool = store._require_pool()
    await store._return_spares(pool)  # the connections it keeps back, too
    held = [await pool.acquire() for _ in range(pool.get_size())]
    where = " OR ".join(f"statement LIKE '{start}%'" for start in starts)
    try:
        query = f"SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE {where}"
        return [(int(row[0]), int(row[1])) for conn in held for row in await conn.fetch(query)]
    finally:
        for conn in held:
            await pool.release(conn)


async def _blind_writes(store: PostgresStore) -> int:
    """How often the store's connections have run the statement that writes a batch without reading its
    rows first."""
    return sum(generic + custom for generic, custom in await _plans(store, "WITH lr AS"))


async def test_a_batch_whose_operations_name_their_versions_is_written_without_a_read(
    make_store: StoreFactory, clock: ManualClock
) -> None:
    async with make_store() as store:
        assert isinstance(store, PostgresStore)
        made = await store.apply(Put("job", "a", {"n": 1}, expected_version=0), Enqueue("q", "gone", {}))
        created = made[0].created_at
        [held] = await store.take("q", owner="w", lease_s=30)
        await store.apply(Enqueue("q", "stays", {}))
        before = await _blind_writes(store)
        await clock.advance(5)
        # When one batch updates a (version named), creates b, acks the held item, dequeues one item that is
        # there and one that is not, pre-leases a new one and appends a line
        results = await asyncio.gather(
            store.apply(Put("job", "a", {"n": 2}, expected_version=1), Append("a", "moved")),
            store.apply(Put("job", "b", {}, expected_version=0), Ack(held)),
            store.apply(Dequeue("q", "stays"), Dequeue("q", "never")),
            store.apply(Enqueue("q", "mine", {}, lease_owner="w2", lease_s=30)),
        )
        # Then it was written by that one statement
        assert await _blind_writes(store) > before
        # and every result holds what the database holds: the stored creation time, the dequeues' truth,
        # the pre-leased item's token, the line's number
        [[a, line], [b, _], [there, absent], [mine]] = results
        assert (a.version, a.created_at, a.updated_at) == (2, created, created + 5)
        assert await store.get("job", "a") == a
        assert b.version == 1 and await store.get("job", "b") == b
        assert (there, absent) == (True, False)
        assert mine.token > held.token
        assert [e.seq for e in await store.history("a")] == [line.seq]
        assert await store.queue_depth("q") == {"ready": 0, "delayed": 0, "leased": 1}


async def test_a_batch_whose_rows_changed_meanwhile_is_written_call_by_call_as_read(
    make_store: StoreFactory,
) -> None:
    async with make_store() as a, make_store() as b:
        assert isinstance(a, PostgresStore)
        await a.apply(Put("job", "x", {}, expected_version=0), Put("job", "y", {}, expected_version=0))
        await a.apply(Enqueue("q", "i", {}))
        [lease] = await a.take("q", owner="w", lease_s=30)
        # Given another instance moved x on, and took the item back (its lease expired and was taken again)
        await b.apply(Put("job", "x", {"by": "b"}, expected_version=1))
        await b.nack(lease)
        await b.take("q", owner="w2", lease_s=30)
        # When one batch of A's expects x at version 1, acks the lost lease, and updates y as it stands
        results = await asyncio.gather(
            a.apply(Put("job", "x", {"by": "a"}, expected_version=1), Append("x", "stale")),
            a.apply(Ack(lease)),
            a.apply(Put("job", "y", {"by": "a"}, expected_version=1), Append("y", "moved")),
            return_exceptions=True,
        )
        # Then the two stale calls fail alone, exactly as each would alone, and the third is written
        assert isinstance(results[0], ConflictError) and isinstance(results[1], LeaseLostError)
        assert not isinstance(results[2], BaseException) and results[2][0].version == 2
        assert (await a.get("job", "x")).data == {"by": "b"}  # type: ignore[union-attr]
        assert await a.history("x") == [] and [e.event for e in await a.history("y")] == ["moved"]
        assert await a.queue_depth("q") == {"ready": 0, "delayed": 0, "leased": 1}


async def test_a_pool_of_two_serves_many_calls_at_once(make_store: StoreFactory) -> None:
    """The store keeps connections back between statements; none is kept while a call waits on the pool, so
    a pool no bigger than what it keeps still serves every call."""
    async with _same_schema(make_store, pool_size=2) as store:
        await store.apply(Put("job", "j", {}, expected_version=0))
        # When many calls of every kind run at once
        calls = [
            store.apply(
                Put("job", f"n{i}", {}, expected_version=0), Enqueue("q", f"i{i}", {}), Append("j", "x")
            )
            for i in range(12)
        ]
        calls += [store.get("job", "j") for _ in range(12)]
        calls += [store.take("q", owner="w", lease_s=30, limit=2) for _ in range(6)]
        calls += [store.list("job", limit=5) for _ in range(4)]
        results = await asyncio.wait_for(asyncio.gather(*calls), timeout=30)
        # Then every one was served
        assert all(r is not None for r in results[12:24])
        assert len(await store.history("j")) == 12


async def test_a_statement_cut_off_by_cancelling_leaves_no_connection_busy(make_store: StoreFactory) -> None:
    async with _same_schema(make_store, pool_size=2) as store:
        await store.apply(Put("job", "j", {"n": 1}, expected_version=0))
        # Given a statement under way, cancelled by its caller
        slow = asyncio.ensure_future(store._fetch("SELECT pg_sleep(5)"))
        await _statement_runs(store, "SELECT pg_sleep")
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        # Then the calls after it, on every connection, are served
        for _ in range(6):
            got = await asyncio.wait_for(store.get("job", "j"), timeout=10)
            assert got is not None and got.data == {"n": 1}


async def _statement_runs(store: PostgresStore, query_start: str) -> None:
    """Wait until a session of this store runs a statement starting so."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'podium' AND query LIKE $1 AND state = 'active'"

    async def runs() -> None:
        while not (await store._fetch(query, query_start + "%"))[0][0]:
            await asyncio.sleep(0.01)  # waiting on another process: nothing to wait on here

    await asyncio.wait_for(runs(), timeout=20)


async def test_a_call_refused_on_another_call_s_expectation_does_not_decide_the_rest(
    make_store: StoreFactory,
) -> None:
    async with make_store() as store:
        await store.apply(Put("job", "x", {}, expected_version=0))
        await store.apply(Put("job", "x", {"n": 2}, expected_version=1))
        # When one batch holds a call that expects x at version 1 twice (refused: x is at 2, and its second
        # put would find 2 anyway) and a call that expects x at 2
        stale, fresh = await asyncio.gather(
            store.apply(
                Put("job", "x", {"a": 1}, expected_version=1), Put("job", "x", {"a": 2}, expected_version=1)
            ),
            store.apply(Put("job", "x", {"b": 1}, expected_version=2)),
            return_exceptions=True,
        )
        # Then the first is refused and the second written, as each would be alone
        assert isinstance(stale, ConflictError)
        assert not isinstance(fresh, BaseException) and fresh[0].version == 3
        assert (await store.get("job", "x")).data == {"b": 1}  # type: ignore[union-attr]


async def test_gets_that_arrive_while_a_read_is_out_go_together_in_one_statement(
    make_store: StoreFactory,
) -> None:
    async with _same_schema(make_store, pool_size=3) as store:
        for n in range(10):
            await store.apply(Put("job", f"j{n}", {"n": n}, expected_version=0))
        sent = await _every_statement(store)
        # When twenty gets arrive at once
        got = await asyncio.gather(
            *(store.get("job", f"j{n % 10}") for n in range(20)), store.get("job", "none")
        )
        # Then each has its record, and they took two statements: the first get's, and one for the rest
        assert [r.data["n"] for r in got[:20]] == [n % 10 for n in range(20)]  # type: ignore[union-attr]
        assert got[20] is None
        assert len(sent) == 2, sent


async def test_a_get_cancelled_while_it_waits_leaves_the_others_served(make_store: StoreFactory) -> None:
    async with make_store() as store:
        assert isinstance(store, PostgresStore)
        await store.apply(Put("job", "a", {}, expected_version=0), Put("job", "b", {}, expected_version=0))
        out = asyncio.ensure_future(store.get("job", "a"))
        await asyncio.sleep(0)  # one turn of the loop: the first get runs to its read, sent (no timing)
        assert store._reads_out == 1
        waiting = [asyncio.ensure_future(store.get("job", k)) for k in ("a", "b", "b")]
        await asyncio.sleep(0)  # one turn: the three wait for it
        assert len(store._gets) == 3
        waiting[1].cancel()
        results = await asyncio.gather(out, *waiting, return_exceptions=True)
        assert results[0] is not None and results[1] is not None and results[1].id == "a"  # type: ignore[union-attr]
        assert isinstance(results[2], asyncio.CancelledError)
        assert results[3] is not None and results[3].id == "b"  # type: ignore[union-attr]
