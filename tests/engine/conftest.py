"""Fixtures for engine tests: an engine on each embedded store; waiting on it is podium.testing's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from podium.clock import Clock, ManualClock
from podium.engine import OrchestratorEngine
from podium.engine.storage import MemoryStorage, SQLiteStorage
from podium.store import Store
from podium.testing import EngineHarness, EventLog, join, wait_event

__all__ = ["EventLog", "finished", "make_engine", "make_store", "until"]

finished = join
"""A job's terminal view, real time bound (``podium.testing.join``)."""
until = wait_event
"""The next engine event matching a predicate (``podium.testing.wait_event``)."""


def make_store(kind: str, tmp_path: Path, clock: Clock | None = None) -> Store:
    if kind == "memory":
        return MemoryStorage(clock=clock)
    return SQLiteStorage(tmp_path / "engine.db", clock=clock, synchronous="NORMAL")


def make_engine(store: Store, **config: Any) -> OrchestratorEngine:
    """An engine on ``store`` with the harness's test settings (``podium.testing.TEST_CONFIG``) over ``config``."""
    return EngineHarness(store, **config).engine


@pytest.fixture(params=["memory", "sqlite"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


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
