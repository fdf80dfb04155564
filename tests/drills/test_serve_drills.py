"""Fault drills: three ``podium serve`` instances on one store with remote worker processes (podium's
worker SDK, one per instance). Each drill ends with an audit of the store's history: every accepted job
terminal, none ended twice, every task result applied once.

Bounded: 90 two-task jobs per drill, each drill well under a minute.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from podium.client import AsyncJobClient
from podium.engine.keys import JOB
from podium.store import open_store
from tests.drills.fleet import CLIENT_TOKEN, Fleet, audit, fleet, store_url

BACKENDS = ["sqlite", "postgres", "redis"]
SERVICE_FIXTURE = {"postgres": "postgres_dsn", "redis": "redis_url"}
N = 90


@pytest.fixture(params=BACKENDS)
async def url(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    fixture = SERVICE_FIXTURE.get(request.param)
    service = request.getfixturevalue(fixture) if fixture else None
    async with store_url(request.param, tmp_path, service) as u:
        yield u


async def _submit(clients: list[AsyncJobClient], lo: int, hi: int) -> list[str]:
    """Submit jobs ``lo..hi`` round-robin over ``clients`` (concurrently); the accepted ids."""
    rr = itertools.cycle(clients)
    return list(await asyncio.gather(*(next(rr).submit("drill", {"i": i}) for i in range(lo, hi))))


async def _open_jobs(url: str) -> int:
    async with open_store(url) as store:
        return await store.count(JOB, status=["pending", "running", "waiting_for_worker"])


async def _wait_all(client: AsyncJobClient, ids: list[str]) -> None:
    views = await asyncio.gather(*(client.wait(j, timeout_s=45) for j in ids))
    assert all(v.status == "finished" for v in views), [(v.job_id, v.status) for v in views]


async def _start(f: Fleet, n: int) -> list[AsyncJobClient]:
    servers = await asyncio.gather(*(f.serve(f"s{k}") for k in range(1, n + 1)))
    await asyncio.gather(*(f.worker(f"w{k}", s) for k, s in enumerate(servers, 1)))
    return [AsyncJobClient(s.url, token=CLIENT_TOKEN) for s in servers]


async def test_kill_one_of_three_instances_mid_load(url: str, tmp_path: Path) -> None:
    async with fleet(url, tmp_path) as f:
        clients = await _start(f, 3)
        try:
            # Any instance answers for the deployment: each lists the workers registered with the others
            for c in clients:
                assert {w.worker_id for w in await c.workers()} == {"w1", "w2", "w3"}
            first = await _submit(clients, 0, 2 * N // 3)
            # Once work flows (a first job is done), kill -9 the second instance.
            await clients[0].wait(first[0], timeout_s=30)
            f.servers[1].kill()
            assert await _open_jobs(url) > 0, "the kill should land with jobs in flight"
            survivors = [clients[0], clients[2]]
            rest = await _submit(survivors, 2 * N // 3, N)
            await _wait_all(clients[0], first + rest)
        finally:
            for c in clients:
                await c.aclose()
    result = await audit(url, set(first + rest), tasks_per_job=2)
    print("\nkill -9 drill:", result.line())
    assert result.terminal == result.finished == N
    assert result.archived_twice == 0 and result.results_applied_twice == 0
    assert result.results_applied == 2 * N


async def test_rolling_restart_moves_leases(url: str, tmp_path: Path) -> None:
    async with fleet(url, tmp_path) as f:
        clients = await _start(f, 3)
        accepted: list[str] = []
        try:
            for k in range(3):  # restart each instance in turn, under load
                batch = await _submit([c for c in clients if c is not None], k * N // 3, (k + 1) * N // 3)
                accepted += batch
                assert await _open_jobs(url) > 0
                # A node goes down gracefully: its worker drains (running tasks finish and report), then its
                # instance stops (running steps finish, leases are given back for the others to take).
                assert f.workers[k].stop() == 0, f.workers[k].read_log()
                # uvicorn ends a graceful SIGTERM stop by re-raising the signal: the log says it was graceful
                assert f.servers[k].stop() in (0, -15)
                assert "Application shutdown complete" in f.servers[k].read_log()
                await clients[k].aclose()
                new = await f.serve(f"s{k + 1}b")
                await f.worker(f"w{k + 1}b", new)
                clients[k] = AsyncJobClient(new.url, token=CLIENT_TOKEN)
            await _wait_all(clients[0], accepted)
        finally:
            for c in clients:
                await c.aclose()
    result = await audit(url, set(accepted), tasks_per_job=2)
    print("\nrolling restart drill:", result.line())
    assert result.terminal == result.finished == N
    assert result.archived_twice == 0 and result.results_applied_twice == 0
    assert result.results_applied == 2 * N
