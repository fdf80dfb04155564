"""One fixture over every backend: each test in this folder runs against each store.

Redis and PostgreSQL use the ``redis_url`` / ``postgres_dsn`` fixtures (skip locally, fail in CI when the
service is missing). Each PostgreSQL test gets its own schema, dropped afterwards; each Redis test its own
key prefix, deleted afterwards (``redis+sqlite-history``: state on Redis, history in a SQLite file).
``sqlite+sync-helper``: SQLite with its fsyncs in a helper process, as ``podium serve`` runs it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from podium.clock import ManualClock
from podium.store import MemoryStore, Store, open_store
from podium.store.sqlite import SQLiteStore
from podium.store.sqlite_sync import sync_in_helper_process

BACKENDS = ["memory", "sqlite", "sqlite+sync-helper", "postgres", "redis", "redis+sqlite-history"]

StoreFactory = Callable[[], Store]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def make_store(
    backend: str, tmp_path: Path, clock: ManualClock, request: pytest.FixtureRequest
) -> AsyncIterator[StoreFactory]:
    """Build a new (unopened) store of the backend, on the same data each time (for reopen tests)."""
    if backend.startswith("redis"):
        # Each test its own key prefix on the real server, deleted afterwards; the split deployment keeps
        # its history in a SQLite file.
        from tests.conformance.redis_support import redis_prefix

        async with redis_prefix(request.getfixturevalue("redis_url")) as url:
            if backend == "redis+sqlite-history":
                url += f"&history=sqlite:///{tmp_path / 'history.db'}"
            yield lambda: open_store(url, clock=clock)
        return
    pg_url = ""
    if backend == "postgres":
        pg_url = f"{request.getfixturevalue('postgres_dsn')}?schema=podium_t_{uuid.uuid4().hex[:12]}"

    def make() -> Store:
        if backend == "memory":
            return MemoryStore(clock=clock)
        if backend == "postgres":
            from podium.store.postgres import PostgresStore

            return PostgresStore(pg_url, clock=clock)
        return SQLiteStore(tmp_path / "podium.db", clock=clock)

    helper = backend == "sqlite+sync-helper"
    sync_in_helper_process(helper)
    try:
        yield make
    finally:
        sync_in_helper_process(False)
    if pg_url:
        await drop_pg_schema(pg_url)


async def drop_pg_schema(url: str) -> None:
    """Drop the PostgreSQL schema a test's store URL names."""
    import asyncpg

    from podium.store import pg_admin

    target = pg_admin.parse_url(url)
    conn = await asyncpg.connect(target.dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{target.schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[Store]:
    s = make_store()
    async with s:
        yield s
