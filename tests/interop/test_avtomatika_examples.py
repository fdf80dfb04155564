"""Avtomatika 1.0b30's README quick start and cookbook recipes, run unchanged on podium, with an unmodified
avtomatika-worker 1.0b20 (its own venv) doing the tasks and podium's client polling over HTTP.

The server process is ``avtomatika_examples_app.py``: the README's code executed as written with ``avtomatika``
mapped onto ``podium.engine``; only glue states the fragments leave out are added.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from bench.peervenv import AVTOMATIKA_WORKER, peer_python
from tests.interop.avtomatika_suite import suite_dir

from podium.client import AsyncJobClient
from podium.engine.scheduler import load_schedules_from_file

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent
REQUIREMENTS = AVTOMATIKA_WORKER
PEER_VENVS = [("avtomatika-worker", REQUIREMENTS)]  # built before the tests run (tests/conftest.py)
CLIENT_TOKEN = "my-secret-client-token"  # the README quick start's tokens
WORKER_TOKEN = "my-secret-worker-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def process(
    args: list[str], env: dict[str, str], log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    with open(log, "wb") as out:
        proc = await asyncio.create_subprocess_exec(*args, env=env, stdout=out, stderr=out)
        try:
            yield proc
        except BaseException:
            sys.stderr.write(log.read_text(errors="replace")[-4000:])
            raise
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def wait_until_serving(url: str, proc: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        for _ in range(200):
            assert proc.returncode is None, "the examples server exited"
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/_public/status")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise TimeoutError("the examples server did not start")


async def wait_for_worker(jobs: AsyncJobClient, worker_id: str) -> None:
    for _ in range(300):
        if any(w.worker_id == worker_id for w in await jobs.workers()):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"worker {worker_id} did not register")


def test_readme_schedules_toml_loads(tmp_path: Path) -> None:
    readme = (suite_dir() / "README.md").read_text()
    block = re.search(r"```toml\n(# schedules.toml example.*?)```", readme, re.S)
    assert block is not None
    (tmp_path / "schedules.toml").write_text(block.group(1))
    (job,) = load_schedules_from_file(tmp_path / "schedules.toml")
    assert (job.name, job.blueprint, job.daily_at, job.dispatch_timeout) == (
        "nightly_backup",
        "backup_flow",
        "02:00",
        60,
    )


async def test_readme_quick_start_and_cookbook_run_unchanged(tmp_path: Path) -> None:
    readme = (await asyncio.to_thread(suite_dir)) / "README.md"
    worker_python = await asyncio.to_thread(peer_python, "avtomatika-worker", REQUIREMENTS)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_env = {
        **os.environ,
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "DETAILED_API_RESPONSES": "true",
    }
    worker_env = {
        **os.environ,
        "WORKER_ID": "readme-worker",
        "ORCHESTRATOR_URL": url,
        "WORKER_TOKEN": WORKER_TOKEN,
        "HEARTBEAT_INTERVAL": "0.5",
        "TASK_POLL_TIMEOUT": "2",
        "IDLE_POLL_DELAY": "0.05",
        "RESULT_RETRY_INITIAL_DELAY": "0.1",
        "REGISTRATION_RETRY_INITIAL_DELAY": "0.2",
        "WORKER_SHUTDOWN_TIMEOUT": "2",
        "TASK_FILES_DIR": str(tmp_path / "payloads"),
    }
    app = [sys.executable, str(HERE / "avtomatika_examples_app.py"), str(readme)]
    async with process(app, server_env, tmp_path / "server.log") as server:
        await wait_until_serving(url, server)
        worker_app = [str(worker_python), str(HERE / "avtomatika_worker_app.py")]
        async with (
            process(worker_app, worker_env, tmp_path / "worker.log"),
            AsyncJobClient(url, token=CLIENT_TOKEN) as jobs,
        ):
            await wait_for_worker(jobs, "readme-worker")

            async def run(endpoint: str, data: dict[str, object]) -> tuple[str, str | None, object]:
                job = await jobs.wait(await jobs.submit(endpoint, data), timeout_s=30)
                return job.status, job.state, job.result

            # the quick start: start -> end ("failed" on Avtomatika 1.0b30, whose only finishing end state is
            # one named "finished"; podium finishes any is_end state, see AVTOMATIKA_END_STATES)
            assert (await run("my_flow", {"hello": "world"}))[:2] == ("finished", "end")
            # recipe 1: F conditions, first match wins, the default otherwise
            assert (await run("recipe_1", {"type": "urgent"}))[1] == "urgent_processing"
            assert (await run("recipe_1", {"priority": 9, "active": True}))[1] == "priority_lane"
            assert (await run("recipe_1", {"priority": 9, "active": False}))[1] == "normal_processing"
            # recipe 2 + the DI example: the worker's output_path/duration are injected into publish_video
            status, state, _ = await run("recipe_2", {"path": "/in/a"})
            assert (status, state) == ("finished", "complete")
            # recipe 3: fan-out to file_analysis, fan-in in the aggregator
            status, state, result = await run("recipe_3", {"files": ["a.txt", "bb.txt"]})
            assert (status, state) == ("finished", "processing_complete")
            assert sorted(r["file"] for r in result) == ["a.txt", "bb.txt"]  # type: ignore[union-attr]
