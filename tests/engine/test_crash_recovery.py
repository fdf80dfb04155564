"""SIGKILL an engine on sqlite (or PostgreSQL) with many jobs in flight; a new engine on the same store
finishes every job, applying each task's result exactly once."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
from pathlib import Path

from podium.engine import OrchestratorEngine
from tests.engine import crash_child

N = 150


async def test_sigkill_mid_flight_then_recover(tmp_path: Path) -> None:
    await crash_then_recover(str(tmp_path / "crash.db"), tmp_path)


async def test_sigkill_mid_flight_then_recover_on_postgres(postgres_dsn: str, tmp_path: Path) -> None:
    from tests.conformance.conftest import drop_pg_schema

    url = f"{postgres_dsn}?schema=podium_t_crash_{os.getpid()}"
    try:
        await crash_then_recover(url, tmp_path)
    finally:
        await drop_pg_schema(url)


async def kill_mid_flight(db: str, tmp_path: Path, ready_after: int | None = None) -> None:
    """Run crash_child on ``db`` and SIGKILL it once it completed ``ready_after`` tasks (default: a third)."""
    log = tmp_path / "child.log"
    with (
        log.open("w") as err,
        subprocess.Popen(
            [
                sys.executable,
                crash_child.__file__,
                str(db),
                str(N),
                *([str(ready_after)] if ready_after else []),
            ],
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


async def crash_then_recover(db: str, tmp_path: Path) -> None:
    await kill_mid_flight(db, tmp_path)

    store = crash_child.store(db)
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


async def test_sigkill_mid_flight_then_recover_on_redis(redis_url: str, tmp_path: Path) -> None:
    from tests.conformance.redis_support import redis_prefix

    async with redis_prefix(redis_url) as url:
        await crash_then_recover(url, tmp_path)
