"""Fixtures for engine tests: an engine on each embedded store; waiting on it is podium.testing's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from podium.clock import Clock, ManualClock
from podium.engine import OrchestratorEngine
from podium.engine.storage import MemoryStorage, RedisStorage, SQLiteStorage
from podium.store import Store
from podium.testing import EngineHarness, EventLog, join, wait_event

__all__ = ["EventLog", "finished", "make_engine", "make_store", "until"]

finished = join
"""A job's terminal view, real time bound (``podium.testing.join``)."""
until = wait_event
"""The next engine event matching a predicate (``podium.testing.wait_event``)."""


def make_store(kind: str, tmp_path: Path, clock: Clock | None = None) -> Store:
    """A store of ``kind``: ``memory``, ``sqlite`` or a ``redis://`` URL (the ``store_kind`` fixture gives
    one with the test's own key prefix)."""
    if kind == "memory":
        return MemoryStorage(clock=clock)
    if kind.startswith("redis:"):
        return RedisStorage(kind, clock=clock)
    return SQLiteStorage(tmp_path / "engine.db", clock=clock, synchronous="NORMAL")


def make_engine(store: Store, **config: Any) -> OrchestratorEngine:
    """An engine on ``store`` with the harness's test settings (``podium.testing.TEST_CONFIG``) over ``config``."""
    return EngineHarness(store, **config).engine


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store_kind(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """``memory``, ``sqlite``, or for ``redis`` the real server's URL with a key prefix of the test's own
    (deleted afterwards; skipped locally, a failure in CI, when Redis is missing)."""
    if request.param != "redis":
        yield str(request.param)
        return
    from tests.conformance.redis_support import redis_prefix

    async with redis_prefix(request.getfixturevalue("redis_url")) as url:
        yield url


@pytest.fixture
async def store(store_kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    s = make_store(store_kind, tmp_path)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def manual_store(store_kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    s = make_store(store_kind, tmp_path, ManualClock())
    await s.open()
    yield s
    await s.close()
