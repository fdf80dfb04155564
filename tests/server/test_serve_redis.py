"""Two ``podium serve`` processes on one Redis (``--storage redis://...``): one deployment, any instance
answers. The worker polls instance A; jobs are submitted to instance B."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from podium.client import AsyncJobClient
from tests.conformance.redis_support import redis_prefix

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "server"
CLIENT_TOKEN, WORKER_TOKEN = "client-secret", "worker-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def store_url(redis_url: str) -> AsyncIterator[str]:
    async with redis_prefix(redis_url) as url:
        yield url


async def test_two_instances_on_one_redis_share_jobs_and_workers(store_url: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CLIENT_TOKEN": CLIENT_TOKEN,
        "GLOBAL_WORKER_TOKEN": WORKER_TOKEN,
        "LOG_LEVEL": "WARNING",
        # A job waiter learns of a job another instance finished when it re-reads the store, every
        # EXECUTOR_POLL_WAIT_S (5 s by default): shorter here so the test takes less time.
        "EXECUTOR_POLL_WAIT_S": "1.0",
    }
    ports = [free_port(), free_port()]
    procs: list[subprocess.Popen[str]] = []
    try:
        # Given two instances on one Redis prefix
        for port in ports:
            args = ["--port", str(port), "--blueprints", str(EXAMPLE), "--storage", store_url]
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "podium", "serve", *args],
                    env=env,
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=tmp_path,
                )
            )
        for server in procs:  # both start at once; each says when it listens
            assert server.stdout is not None
            line = server.stdout.readline()
            assert "serving on" in line, line
        a, b = (f"http://127.0.0.1:{port}" for port in ports)
        # and a worker that polls instance A only
        worker_env = {**env, "ORCHESTRATOR_URL": a, "WORKER_TOKEN": WORKER_TOKEN}
        procs.append(
            subprocess.Popen([sys.executable, str(EXAMPLE / "worker.py")], env=worker_env, text=True)
        )
        # When jobs are submitted to instance B
        async with (
            AsyncJobClient(b, token=CLIENT_TOKEN) as on_b,
            AsyncJobClient(a, token=CLIENT_TOKEN) as on_a,
        ):
            ids = [await on_b.submit("transcode", {"path": f"/videos/{n}"}) for n in ("a", "b", "c")]
            # Then A's worker runs them and either instance tells the outcome
            for job in await asyncio.gather(*(on_b.wait(job_id, timeout_s=30) for job_id in ids)):
                assert job.status == "finished", job
                seen = await on_a.get(job.job_id)
                assert seen.status == "finished" and seen.step == job.step
            # the worker registered with A is listed by A (and by B: the registry is in the store)
            assert [w.worker_id for w in await on_a.workers()] == ["example-worker"]
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)
            if proc.stdout is not None:
                proc.stdout.close()
