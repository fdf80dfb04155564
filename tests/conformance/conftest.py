"""One fixture over every backend: each test in this folder runs against each store.

Redis and PostgreSQL join the list when their backends land; they will use the ``redis_url`` /
``postgres_dsn`` fixtures (skip locally, fail in CI when the service is missing).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from podium.clock import ManualClock
from podium.store import MemoryStore, Store
from podium.store.sqlite import SQLiteStore

BACKENDS = ["memory", "sqlite"]

StoreFactory = Callable[[], Store]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_store(backend: str, tmp_path: Path, clock: ManualClock) -> StoreFactory:
    """Build a new (unopened) store of the backend, on the same data each time (for reopen tests)."""

    def make() -> Store:
        if backend == "memory":
            return MemoryStore(clock=clock)
        return SQLiteStore(tmp_path / "podium.db", clock=clock)

    return make


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[Store]:
    s = make_store()
    async with s:
        yield s
