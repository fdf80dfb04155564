"""An unmodified avtomatika-worker 1.0b20 (in its own venv) registers with podium, takes tasks, returns results.

The worker script (``avtomatika_worker_app.py``) imports only ``avtomatika_worker``; podium serves it over
a real uvicorn server on loopback. Its messages are signed with its token (the SDK does that whenever
``WORKER_TOKEN`` is set), so podium's signature check runs on every register, heartbeat, event and result.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from bench.peervenv import AVTOMATIKA_WORKER, peer_python
from tests.server.harness import CLIENT_TOKEN, WORKER_TOKEN, Stack, make_engine, running_stack

from podium.client import AsyncJobClient
from podium.engine.blueprint import Blueprint
from podium.testing import watch

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent
REQUIREMENTS = AVTOMATIKA_WORKER
PEER_VENVS = [("avtomatika-worker", REQUIREMENTS)]  # built before the tests run (tests/conftest.py)


def single_task_blueprint(name: str, task_type: str) -> Blueprint:
    bp = Blueprint(name, api_endpoint=f"/jobs/{name}", api_version="v1")

    @bp.handler(is_start=True)
    async def start(initial_data: dict[str, Any], actions: Any) -> None:
        actions.dispatch_task(
            task_type, dict(initial_data), transitions={"success": "done", "failure": "failed"}
        )

    @bp.handler(is_end=True)
    async def done() -> None:
        return None

    @bp.handler(is_end=True)
    async def failed() -> None:
        return None

    return bp


@contextlib.asynccontextmanager
async def avtomatika_worker(
    stack: Stack, worker_id: str, log_path: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    python = await asyncio.to_thread(peer_python, "avtomatika-worker", REQUIREMENTS)
    env = {
        **os.environ,
        "WORKER_ID": worker_id,
        "ORCHESTRATOR_URL": stack.url,
        "WORKER_TOKEN": WORKER_TOKEN,
        "HEARTBEAT_INTERVAL": "0.5",
        "WORKER_HEARTBEAT_COOLDOWN": "0.1",
        "TASK_POLL_TIMEOUT": "2",
        "IDLE_POLL_DELAY": "0.05",
        "RESULT_RETRY_INITIAL_DELAY": "0.1",
        "REGISTRATION_RETRY_INITIAL_DELAY": "0.2",
        "WORKER_SHUTDOWN_TIMEOUT": "2",
        "TASK_FILES_DIR": str(log_path.parent / "payloads"),
        "LOG_LEVEL": "INFO",
    }
    registered = watch(
        stack.engine, lambda e: e.type == "worker_registered" and e.data.get("worker_id") == worker_id
    )
    with open(log_path, "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            str(python), str(HERE / "avtomatika_worker_app.py"), env=env, stdout=log, stderr=log
        )
        try:
            await asyncio.wait_for(registered, 30)
            yield proc
        except BaseException:
            sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
            raise
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


def interop_engine() -> Any:
    engine = make_engine()
    engine.register_blueprint(single_task_blueprint("strict", "strict_output"))
    engine.register_blueprint(single_task_blueprint("slow", "slow"))
    return engine


async def test_unmodified_avtomatika_worker_runs_podium_jobs(tmp_path: Path) -> None:
    async with running_stack(interop_engine()) as stack:
        async with avtomatika_worker(stack, "avto-1", tmp_path / "worker.log"):
            workers = stack.server.app.state.podium.workers
            assert set(workers["avto-1"].skills) == {
                "video_transcoding",
                "strict_output",
                "file_analysis",
                "slow",
            }
            progress = watch(stack.engine, lambda e: e.type == "task_progress")
            async with AsyncJobClient(stack.url, token=CLIENT_TOKEN) as jobs:
                ids = [await jobs.submit("transcode", {"path": f"/in/{i}"}) for i in range(5)]
                finished = [await jobs.wait(job_id, timeout_s=30) for job_id in ids]
                assert [j.status for j in finished] == ["finished"] * 5
                assert (await asyncio.wait_for(progress, 10)).data["progress"] == 50
                state = (await stack.engine.get_job(ids[0])).state_history
                assert state["output_path"] == "/in/0.mp4" and state["duration"] == 95
                listed = await jobs.workers()
                assert [w.worker_id for w in listed] == ["avto-1"]

                # a result that breaks the skill's declared output schema is a contract error: quarantine
                bad = await jobs.wait(await jobs.submit("strict", {"count": "many"}), timeout_s=30)
                assert bad.status == "quarantined"
                assert bad.error is not None and "CONTRACT_VIOLATION" in str(bad.error)
                good = await jobs.wait(await jobs.submit("strict", {"count": 3}), timeout_s=30)
                assert good.status == "finished"

                # cancelling a job tells the worker through its heartbeat answer; its late result is ignored
                taken = watch(stack.engine, lambda e: e.type == "task_taken")  # before submit: no race
                slow_id = await jobs.submit("slow", {})
                assert (await asyncio.wait_for(taken, 15)).job_id == slow_id
                ignored = watch(stack.engine, lambda e: e.type == "result_ignored" and e.job_id == slow_id)
                await jobs.cancel(slow_id)
                event = await asyncio.wait_for(ignored, 15)
                assert event.data["result_status"] == "cancelled"
                assert (await jobs.get(slow_id)).status == "cancelled"
        registry = stack.server.app.state.podium.metrics.registry
        # every message was signed and every signature checked out
        assert not registry.get_sample_value("podium_auth_failures_total", {"kind": "signature"})
        # SIGTERM made the worker send its final "offline" heartbeat
        assert workers["avto-1"].status == "offline"


async def test_avtomatika_worker_with_a_wrong_token_is_refused(tmp_path: Path) -> None:
    async with running_stack(interop_engine(), global_worker_token="another-token") as stack:
        registry = stack.server.app.state.podium.metrics.registry

        def refused() -> float:
            return registry.get_sample_value("podium_auth_failures_total", {"kind": "worker"}) or 0.0

        python = await asyncio.to_thread(peer_python, "avtomatika-worker", REQUIREMENTS)
        env = {
            **os.environ,
            "WORKER_ID": "avto-bad",
            "ORCHESTRATOR_URL": stack.url,
            "WORKER_TOKEN": WORKER_TOKEN,
            "REGISTRATION_RETRY_INITIAL_DELAY": "0.1",
            "TASK_FILES_DIR": str(tmp_path),
        }
        with open(tmp_path / "bad.log", "wb") as log:
            proc = await asyncio.create_subprocess_exec(
                str(python), str(HERE / "avtomatika_worker_app.py"), env=env, stdout=log, stderr=log
            )
            try:
                # the worker retries registration forever; wait (bounded) until the server has refused it
                for _ in range(300):
                    if refused() >= 1 or proc.returncode is not None:
                        break
                    await asyncio.sleep(0.05)
            finally:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 15)
        assert refused() >= 1
        assert "avto-bad" not in stack.server.app.state.podium.workers
