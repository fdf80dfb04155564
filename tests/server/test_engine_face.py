"""What the server takes from the engine: job ownership, lease-keeping heartbeats, terminal webhooks, and
the engine serving the API itself when embedded the Avtomatika way."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from podium.client import AsyncJobClient, JobClientError
from podium.engine import ActionFactory, Blueprint, OrchestratorEngine
from podium.engine.config import Config
from podium.engine.storage import MemoryStorage
from podium.testing import watch
from podium.worker import TaskContext, TaskFailed, Worker
from tests.server.harness import CLIENT_TOKEN, WORKER_TOKEN, make_engine, running_stack
from tests.server.loopback import serve_app

CLIENTS = """\
[alice]
token = "alice-token"
plan = "free"

[bob]
token = "bob-token"
plan = "free"

[ops]
token = "ops-token"
plan = "internal"
admin = true
"""


def make_worker(url: str, worker_id: str = "w1", **kw: Any) -> Worker:
    opts: dict[str, Any] = {"heartbeat_interval_s": 0.1, "poll_timeout_s": 2.0, "backoff_initial_s": 0.02}
    return Worker(worker_id=worker_id, server_url=url, token=WORKER_TOKEN, **{**opts, **kw})


async def test_a_client_sees_and_acts_on_its_own_jobs_only(tmp_path: Path) -> None:
    clients = tmp_path / "clients.toml"
    clients.write_text(CLIENTS)
    async with running_stack(clients_config_path=clients) as stack:
        alice = AsyncJobClient(stack.url, token="alice-token")
        bob = AsyncJobClient(stack.url, token="bob-token")
        ops = AsyncJobClient(stack.url, token="ops-token")
        async with alice, bob, ops:
            waiting = watch(stack.engine, lambda e: e.type == "job_waiting")
            job_id = await alice.submit("review", api_version="")
            await asyncio.wait_for(waiting, 10)
            theirs = await bob.submit("review", api_version="")
            # Given alice's job, when bob reads, lists, cancels or approves it, then it does not exist for him
            for call in (bob.get(job_id), bob.cancel(job_id), bob.approve(job_id), bob.history(job_id)):
                with pytest.raises(JobClientError) as info:
                    await call
                assert info.value.status_code == 404
            assert [j.id for j in (await bob.list()).items] == [theirs]
            assert [j.id for j in (await alice.list()).items] == [job_id]
            assert {j.id for j in (await ops.list()).items} == {job_id, theirs}  # an admin sees every job
            assert (await ops.get(theirs)).status == "waiting_for_human"
            await alice.approve(job_id)
            assert (await alice.wait(job_id, timeout_s=10)).status == "finished"
            # paging walks past other clients' jobs
            mine = [await alice.submit("review", api_version="") for _ in range(3)]
            await bob.submit("review", api_version="")
            first = await alice.list(limit=2)
            assert [j.id for j in first.items] == mine[::-1][:2] and first.next is not None
            rest = await alice.list(limit=2, after=first.next)
            assert [j.id for j in rest.items] == [mine[0], job_id]


async def test_a_heartbeat_keeps_a_task_longer_than_its_lease() -> None:
    engine = make_engine(TASK_LEASE_S=0.5)
    async with running_stack(engine) as stack:
        slow = make_worker(stack.url, "slow")
        other = make_worker(stack.url, "other")
        ran: list[str] = []

        @slow.task("video_transcoding")
        async def long_run(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
            ran.append("slow")
            await asyncio.sleep(1.5)  # three leases long; heartbeats every 0.1 s keep it
            return {"by": "slow"}

        @other.task("video_transcoding")
        async def quick(params: dict[str, Any]) -> dict[str, Any]:
            ran.append("other")
            return {"by": "other"}

        async with slow, AsyncJobClient(stack.url, token=CLIENT_TOKEN) as jobs:
            started = watch(stack.engine, lambda e: e.type == "task_taken")
            job_id = await jobs.submit("transcode", {"path": "x"})
            await asyncio.wait_for(started, 10)
            async with other:
                job = await jobs.wait(job_id, timeout_s=20)
        assert job.status == "finished" and ran == ["slow"]
        events = [h.event for h in await stack.engine.job_history(job_id)]
        assert events.count("task_completed") == 1 and "result_ignored" not in events


async def test_failed_and_quarantined_jobs_reach_their_webhook() -> None:
    calls: list[dict[str, Any]] = []
    got = asyncio.Event()

    async def hook(request: Request) -> JSONResponse:
        calls.append(await request.json())
        if len(calls) >= 2:
            got.set()
        return JSONResponse({})

    receiver = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    async with serve_app(receiver) as hook_url, running_stack() as stack:
        worker = make_worker(stack.url)

        @worker.task("video_transcoding")
        async def fail(params: dict[str, Any]) -> dict[str, Any]:
            if params["path"] == "odd":
                raise TaskFailed("no such status", code="TASK_ODD", status="odd")  # no transition: failed
            raise TaskFailed("cannot ever work", code="PERMANENT_ERROR")  # quarantined

        async with worker, AsyncJobClient(stack.url, token=CLIENT_TOKEN) as jobs:
            failed = await jobs.submit("transcode", {"path": "odd"}, webhook_url=f"{hook_url}/hook")
            quarantined = await jobs.submit("transcode", {"path": "x"}, webhook_url=f"{hook_url}/hook")
            assert (await jobs.wait(failed, timeout_s=10)).status == "failed"
            assert (await jobs.wait(quarantined, timeout_s=10)).status == "quarantined"
        await asyncio.wait_for(got.wait(), 10)
    by_job = {c["job_id"]: c for c in calls}
    assert by_job[failed]["event"] == "job_failed" and by_job[failed]["status"] == "failed"
    assert (
        by_job[quarantined]["event"] == "job_quarantined" and by_job[quarantined]["status"] == "quarantined"
    )
    assert by_job[quarantined]["error"]["code"] == "PERMANENT_ERROR"


# --- Avtomatika's embedding: `await engine.start()` serves the API -----------------------------------

bp = Blueprint("greet", api_endpoint="/jobs/greet", api_version="v1")


@bp.handler(is_start=True)
async def start(initial_data: dict[str, Any], actions: ActionFactory) -> None:
    actions.dispatch_task("greet", {"name": initial_data["name"]}, transitions={"success": "finished"})


@bp.handler(is_end=True)
async def finished() -> None: ...


async def test_engine_start_serves_the_client_and_worker_api_like_avtomatika() -> None:
    # The script an Avtomatika user has, with `avtomatika` changed to `podium.engine`.
    config = Config(API_HOST="127.0.0.1", API_PORT=0, CLIENT_TOKEN="c-token", GLOBAL_WORKER_TOKEN="w-token")
    engine = OrchestratorEngine(MemoryStorage(), config)
    engine.register_blueprint(bp)
    await engine.start()
    try:
        url = engine.http_url
        assert url is not None
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/_public/status")).json() == {"status": "ok"}
        worker = Worker(worker_id="g1", server_url=url, token="w-token", heartbeat_interval_s=0.1)

        @worker.task("greet")
        async def greet(params: dict[str, Any]) -> dict[str, Any]:
            return {"greeting": f"hello, {params['name']}"}

        async with worker, AsyncJobClient(url, token="c-token") as jobs:
            job = await jobs.wait(await jobs.submit("greet", {"name": "ada"}), timeout_s=10)
        assert job.status == "finished" and job.result == "hello, ada"  # Avtomatika: the last entry
    finally:
        await engine.stop()
    assert engine.http_url is None
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(base_url=url) as http:
            await http.get("/_public/status")


async def test_in_process_engines_and_the_servers_own_engine_serve_nothing_more() -> None:
    quiet = OrchestratorEngine(MemoryStorage(), Config(API_PORT=0), serve_http=False)
    async with quiet:
        assert quiet.http_url is None
    engine = make_engine()
    engine.serve_http = True  # even so, the app's lifespan starts its engine without serving again
    async with running_stack(engine) as stack:
        assert engine.http_url is None
        async with httpx.AsyncClient(base_url=stack.url) as http:
            assert (await http.get("/_public/status")).status_code == 200
