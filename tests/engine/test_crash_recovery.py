"""SIGKILL an engine on sqlite with many jobs in flight; a new engine on the same file finishes every job,
applying each task's result exactly once."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from podium.engine import OrchestratorEngine
from tests.engine import crash_child

N = 150


@pytest.fixture(params=["sqlite", "redis"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A SQLite file, or a key prefix of the test's own on the real Redis (deleted afterwards)."""
    if request.param == "sqlite":
        yield str(tmp_path / "crash.db")
        return
    from tests.conformance.redis_support import redis_prefix

    async with redis_prefix(request.getfixturevalue("redis_url")) as url:
        yield url


async def test_sigkill_mid_flight_then_recover(tmp_path: Path, target: str) -> None:
    db = target
    log = tmp_path / "child.log"
    with (
        log.open("w") as err,
        subprocess.Popen(
            [sys.executable, crash_child.__file__, db, str(N)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**os.environ, "LOG_LEVEL": "WARNING"},
        ) as child,
    ):
        try:
            assert child.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 30)
            assert line.strip() == "READY", log.read_text()
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        finally:
            if child.poll() is None:
                child.kill()
    assert child.returncode == -signal.SIGKILL

    store = crash_child.storage(db)
    engine = OrchestratorEngine(store, crash_child.config(), serve_http=False)
    engine.register_blueprint(crash_child.blueprint())
    engine.add_worker(crash_child.worker())
    async with engine:
        unfinished = await engine.count_jobs(status=["pending", "running", "waiting_for_worker"])
        assert unfinished > 0, "the kill should land with jobs in flight"
        jobs = await engine.list_jobs(limit=N)
        assert len(jobs) == N
        views = [await asyncio.wait_for(engine.wait_for_job(j.job_id), 30) for j in jobs]
        for v in views:
            assert v.status == "finished", (v.job_id, v.status, v.error)
            i = v.initial_data["i"]
            assert (v.state_history["a"], v.state_history["b"]) == (2 * i, 2 * i + 1)
            completed = collections.Counter(
                e.data["task_id"] for e in await engine.job_history(v.job_id) if e.event == "task_completed"
            )
            tasks = await engine.list_tasks(v.job_id)
            assert len(tasks) == 2 and all(t.status == "completed" for t in tasks)
            assert completed == {t.task_id: 1 for t in tasks}  # each result applied once
    await store.close()
