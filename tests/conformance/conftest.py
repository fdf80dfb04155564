"""One fixture over every backend: each test in this folder runs against each store.

Redis runs on the real server through the ``redis_url`` fixture (skip locally, fail in CI when it is
missing), each test under its own key prefix, deleted afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from podium.clock import ManualClock
from podium.store import MemoryStore, Store, open_store
from podium.store.sqlite import SQLiteStore

BACKENDS = ["memory", "sqlite", "redis", "redis+sqlite-history"]

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

    def make() -> Store:
        if backend == "memory":
            return MemoryStore(clock=clock)
        return SQLiteStore(tmp_path / "podium.db", clock=clock)

    yield make


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[Store]:
    s = make_store()
    async with s:
        yield s
