"""Fixtures for engine tests: an engine on each embedded store, helpers that wait on engine events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from podium.clock import Clock, ManualClock
from podium.engine import Config, EngineEvent, OrchestratorEngine
from podium.engine.storage import MemoryStorage, SQLiteStorage
from podium.store import Store


def make_store(kind: str, tmp_path: Path, clock: Clock | None = None) -> Store:
    if kind == "memory":
        return MemoryStorage(clock=clock)
    return SQLiteStorage(tmp_path / "engine.db", clock=clock, synchronous="NORMAL")


def make_engine(store: Store, **config: Any) -> OrchestratorEngine:
    cfg = Config(**{"RETRY_BACKOFF_BASE_S": 0.0, "EXECUTOR_POLL_WAIT_S": 5.0, **config})
    return OrchestratorEngine(store, cfg, serve_http=False)


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


async def until(
    engine: OrchestratorEngine,
    pred: Callable[[EngineEvent], bool],
    timeout_s: float = 10.0,
) -> EngineEvent:
    """Wait (real time bound) for the first engine event matching ``pred``."""
    fut: asyncio.Future[EngineEvent] = asyncio.get_running_loop().create_future()

    def listener(ev: EngineEvent) -> None:
        if not fut.done() and pred(ev):
            fut.set_result(ev)

    unsub = engine.subscribe(listener)
    try:
        return await asyncio.wait_for(fut, timeout_s)
    finally:
        unsub()


async def finished(engine: OrchestratorEngine, job_id: str, timeout_s: float = 10.0) -> Any:
    return await asyncio.wait_for(engine.wait_for_job(job_id), timeout_s)


class EventLog:
    """Records every engine event from creation on; ``wait`` returns the first (past or future) match."""

    def __init__(self, engine: OrchestratorEngine) -> None:
        self.events: list[EngineEvent] = []
        self._waiters: list[tuple[Callable[[EngineEvent], bool], asyncio.Future[EngineEvent]]] = []
        engine.subscribe(self._on)

    def _on(self, ev: EngineEvent) -> None:
        self.events.append(ev)
        for pred, fut in list(self._waiters):
            if not fut.done() and pred(ev):
                fut.set_result(ev)

    async def wait(self, pred: Callable[[EngineEvent], bool], timeout_s: float = 10.0) -> EngineEvent:
        for ev in self.events:
            if pred(ev):
                return ev
        fut: asyncio.Future[EngineEvent] = asyncio.get_running_loop().create_future()
        self._waiters.append((pred, fut))
        return await asyncio.wait_for(fut, timeout_s)
