"""The server end to end over a real uvicorn server on loopback: client API, podium workers, webhooks."""

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

from podium.client import AsyncJobClient, JobClient, JobClientError, QuotaExceededError
from podium.testing import watch
from podium.worker import TaskContext, TaskFailed, Worker
from tests.server.harness import CLIENT_TOKEN, WORKER_TOKEN, make_engine, running_stack
from tests.server.loopback import serve_app


def make_worker(url: str, worker_id: str = "w1", **kw: Any) -> Worker:
    opts: dict[str, Any] = {"heartbeat_interval_s": 0.1, "poll_timeout_s": 2.0, "backoff_initial_s": 0.02}
    return Worker(worker_id=worker_id, server_url=url, token=WORKER_TOKEN, **{**opts, **kw})


def transcoder(worker: Worker, **task_kw: Any) -> Worker:
    @worker.task("video_transcoding", **task_kw)
    async def transcode(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        await ctx.progress(50, "half way")
        return {"output_path": params["path"] + ".mp4", "duration": 95}

    return worker


async def test_job_runs_on_a_remote_worker_and_reports_result_and_progress() -> None:
    async with running_stack() as stack, transcoder(make_worker(stack.url)) as worker:
        progress = watch(stack.engine, lambda e: e.type == "task_progress")
        async with AsyncJobClient(stack.url, token=CLIENT_TOKEN) as jobs:
            job_id = await jobs.submit("transcode", {"path": "/in/a"})
            job = await jobs.wait(job_id, timeout_s=20)
            assert (await asyncio.wait_for(progress, 5)).data == {"progress": 50, "message": "half way"}
            assert job.status == "finished"
            assert job.step == "finished" and job.blueprint_name == "transcode"
            assert job.result is not None
            history = [h.event for h in await jobs.history(job_id)]
            assert "job_created" in history and "task_completed" in history
            (view,) = await jobs.workers()
            assert view.worker_id == "w1" and view.skills == ["video_transcoding"]
            fetched = await jobs.get(job_id)
            assert fetched.progress == 50 and fetched.progress_message == "half way"
        assert worker.completed == 1


async def test_avtomatika_client_api_shapes() -> None:
    async with running_stack() as stack, httpx.AsyncClient(base_url=stack.url) as http:
        headers = {"X-Client-Token": CLIENT_TOKEN}
        r = await http.post("/api/v1/jobs/transcode", json={"initial_data": {"path": "x"}}, headers=headers)
        assert r.status_code == 202
        assert r.json()["status"] == "accepted" and r.json()["job_id"]
        job = (await http.get(f"/api/v1/jobs/{r.json()['job_id']}", headers=headers)).json()
        assert {"id", "status", "blueprint_name", "step"} <= set(job)
        assert job["status"] == "waiting_for_worker" and job["result"] is None
        # an unversioned blueprint lives under /api/jobs/...
        r = await http.post("/api/jobs/review", json={"initial_data": {}}, headers=headers)
        assert r.status_code == 202
        assert (await http.get("/_public/status")).json() == {"status": "ok"}


async def test_invalid_initial_data_is_422_naming_the_field_and_creates_nothing() -> None:
    async with running_stack() as stack, httpx.AsyncClient(base_url=stack.url) as http:
        headers = {"X-Client-Token": CLIENT_TOKEN}
        r = await http.post("/api/v1/jobs/transcode", json={"initial_data": {"size": 3}}, headers=headers)
        assert r.status_code == 422
        assert r.json()["field"] == "initial_data.path"
        assert "path" in r.json()["error"]
        r = await http.post(
            "/api/v1/jobs/transcode", json={"initial_data": {"path": "p", "size": -1}}, headers=headers
        )
        assert r.status_code == 422 and r.json()["field"] == "initial_data.size"
        r = await http.post(
            "/api/v1/jobs/transcode", json={"initial_data": {}, "dispatch_timeout": "x"}, headers=headers
        )
        assert r.status_code == 422 and r.json()["field"] == "dispatch_timeout"
        assert await stack.engine.count_jobs() == 0
        r = await http.post("/api/v1/jobs/nope", json={"initial_data": {}}, headers=headers)
        assert r.status_code == 404
        # a top-level field podium does not know is ignored, as Avtomatika ignores it
        body = {"initial_data": {"path": "p", "size": 1}, "client_request_id": "r-1"}
        r = await http.post("/api/v1/jobs/transcode", json=body, headers=headers)
        assert r.status_code == 202
        job = await stack.engine.get_job(r.json()["job_id"])
        assert job.initial_data == {"path": "p", "size": 1}


async def test_a_job_policy_is_honoured_and_its_size_bounded() -> None:
    async with running_stack() as stack, httpx.AsyncClient(base_url=stack.url) as http:
        headers = {"X-Client-Token": CLIENT_TOKEN}
        body = {"initial_data": {"path": "p"}, "policy": {"allowed_skills": ["other"]}}
        r = await http.post("/api/v1/jobs/transcode", json=body, headers=headers)
        assert r.status_code == 202
        job = await stack.engine.wait_for_job(r.json()["job_id"], timeout_s=10)
        assert job.status == "failed" and "video_transcoding" in str(job.error)
        big = {"initial_data": {"path": "p"}, "policy": {"allowed_skills": ["x" * 5000]}}
        r = await http.post("/api/v1/jobs/transcode", json=big, headers=headers)
        assert r.status_code == 422 and r.json()["field"] == "policy"
        assert await stack.engine.count_jobs() == 1


async def test_cancel_list_and_graph() -> None:
    async with running_stack() as stack, AsyncJobClient(stack.url, token=CLIENT_TOKEN) as jobs:
        ids = [await jobs.submit("transcode", {"path": f"p{i}"}) for i in range(5)]
        await jobs.cancel(ids[0])
        assert (await jobs.get(ids[0])).status == "cancelled"
        with pytest.raises(JobClientError) as info:
            await jobs.cancel(ids[0])
        assert info.value.status_code == 409
        page = await jobs.list(limit=2)
        assert [j.id for j in page.items] == [ids[4], ids[3]]
        page2 = await jobs.list(limit=2, after=page.next)
        assert [j.id for j in page2.items] == [ids[2], ids[1]]
        cancelled = await jobs.list(status="cancelled")
        assert [j.id for j in cancelled.items] == [ids[0]] and cancelled.next is None
        assert (await jobs.list(blueprint="review")).items == []
        async with httpx.AsyncClient(base_url=stack.url, headers={"X-Client-Token": CLIENT_TOKEN}) as http:
            graph = await http.get("/api/v1/blueprints/transcode/graph")
            assert graph.status_code == 200 and graph.text.startswith("stateDiagram-v2")
            assert "start --> publish" in graph.text
            assert (await http.get("/api/v1/blueprints/nope/graph")).status_code == 404
            listed = (await http.get("/api/v1/blueprints")).json()
            assert {b["path"] for b in listed} == {"/api/v1/jobs/transcode", "/api/jobs/review"}


async def test_approval_with_data_and_the_public_webhook_route() -> None:
    async with running_stack() as stack, AsyncJobClient(stack.url, token=CLIENT_TOKEN) as jobs:
        # Watch before submitting: the engine may reach the approval state before submit returns.
        waiting = watch(stack.engine, lambda e: e.type == "job_waiting")
        first = await jobs.submit("review", api_version="")
        assert (await asyncio.wait_for(waiting, 10)).job_id == first
        assert (await jobs.get(first)).status == "waiting_for_human"
        await jobs.approve(first, {"reviewer": "ann"})
        done = await jobs.wait(first, timeout_s=10)
        assert done.status == "finished" and done.step == "done"
        assert (await stack.engine.get_job(first)).state_history["reviewer"] == "ann"
        with pytest.raises(JobClientError) as info:
            await jobs.reject(first)
        assert info.value.status_code == 409

        waiting = watch(stack.engine, lambda e: e.type == "job_waiting")
        second = await jobs.submit("review", api_version="")
        assert (await asyncio.wait_for(waiting, 10)).job_id == second
        async with httpx.AsyncClient(base_url=stack.url) as http:
            r = await http.post(f"/_public/webhooks/approval/{second}", json={"decision": "rejected"})
            assert r.status_code == 401  # no approval token and no client token
            r = await http.post(
                f"/_public/webhooks/approval/{second}",
                json={"decision": "rejected"},
                headers={"X-Client-Token": CLIENT_TOKEN},
            )
            assert r.status_code == 200 and r.json()["status"] == "approval_received"
        assert (await jobs.wait(second, timeout_s=10)).step == "refused"


async def test_result_breaking_the_output_contract_quarantines_with_a_clear_message() -> None:
    async with running_stack() as stack:
        worker = make_worker(stack.url)

        @worker.task(
            "video_transcoding",
            output_schema={
                "type": "object",
                "required": ["output_path"],
                "properties": {"output_path": {"type": "string"}},
            },
        )
        async def bad(params: dict[str, Any]) -> dict[str, Any]:
            return {"output_path": 42}

        async with worker, AsyncJobClient(stack.url, token=CLIENT_TOKEN) as jobs:
            job = await jobs.wait(await jobs.submit("transcode", {"path": "x"}), timeout_s=10)
        assert job.status == "quarantined"
        assert job.error is not None
        assert "contract violation" in job.error["message"]
        assert "data.output_path" in job.error["message"] and "video_transcoding" in job.error["message"]


async def test_task_failed_takes_the_failure_transition() -> None:
    async with running_stack() as stack:
        worker = make_worker(stack.url)

        @worker.task("video_transcoding")
        async def fails(params: dict[str, Any]) -> dict[str, Any]:
            raise TaskFailed("corrupt input", code="SOME_ERROR")

        async with worker, AsyncJobClient(stack.url, token=CLIENT_TOKEN) as jobs:
            job = await jobs.wait(await jobs.submit("transcode", {"path": "x"}), timeout_s=10)
        assert job.status == "finished" and job.step == "broken"


async def test_worker_dying_mid_task_its_lease_expires_and_the_task_is_offered_again() -> None:
    engine = make_engine(TASK_LEASE_S=0.5)
    async with running_stack(engine) as stack, AsyncJobClient(stack.url, token=CLIENT_TOKEN) as jobs:
        stuck = make_worker(stack.url, "stuck")
        started = asyncio.Event()

        @stuck.task("video_transcoding")
        async def hang(params: dict[str, Any]) -> dict[str, Any]:
            started.set()
            await asyncio.Event().wait()
            return {}

        await stuck.start()
        job_id = await jobs.submit("transcode", {"path": "x"})
        await asyncio.wait_for(started.wait(), 10)
        await stuck.stop()  # dies: no result, no deregistration
        async with transcoder(make_worker(stack.url, "rescuer")):
            job = await jobs.wait(job_id, timeout_s=15)
        assert job.status == "finished"
        taken = [h.data.get("worker_id") for h in await jobs.history(job_id) if h.event == "task_completed"]
        assert taken == ["rescuer"]


async def test_webhook_on_job_finished_reaches_a_receiver_that_fails_twice() -> None:
    calls: list[dict[str, Any]] = []
    delivered = asyncio.Event()

    async def hook(request: Request) -> JSONResponse:
        calls.append(await request.json())
        if len(calls) <= 2:
            return JSONResponse({}, status_code=503)
        delivered.set()
        return JSONResponse({})

    receiver = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    async with serve_app(receiver) as hook_url, running_stack() as stack, transcoder(make_worker(stack.url)):
        async with AsyncJobClient(stack.url, token=CLIENT_TOKEN) as jobs:
            job_id = await jobs.submit("transcode", {"path": "x"}, webhook_url=f"{hook_url}/hook")
            job = await jobs.wait(job_id, timeout_s=10)
        await asyncio.wait_for(delivered.wait(), 10)
    assert len(calls) == 3
    body = calls[-1]
    assert body["event"] == "job_finished" and body["job_id"] == job_id and body["status"] == "finished"
    assert set(body) >= {"event", "job_id", "status", "result", "error"}
    assert body["result"] == job.result and body["error"] is None  # carried by the engine's event


async def test_engine_events_are_counted_without_a_subscription_to_each() -> None:
    async with running_stack() as stack, transcoder(make_worker(stack.url)):
        async with AsyncJobClient(stack.url, token=CLIENT_TOKEN) as jobs:
            await jobs.wait(await jobs.submit("transcode", {"path": "x"}), timeout_s=10)
        async with httpx.AsyncClient(base_url=stack.url) as http:
            metrics = (await http.get("/_public/metrics")).text
    assert 'podium_engine_events_total{type="job_finished"} 1.0' in metrics
    assert 'podium_engine_events_total{type="task_taken"} 1.0' in metrics


async def test_quota_exceeded_is_429_with_a_clear_body(tmp_path: Path) -> None:
    clients = tmp_path / "clients.toml"
    clients.write_text(
        '[plans.tiny]\nmonthly_attempts = 1\n\n[small]\ntoken = "small-token"\nplan = "tiny"\n'
    )
    async with (
        running_stack(clients_config_path=clients) as stack,
        AsyncJobClient(stack.url, token="small-token") as jobs,
    ):
        await jobs.submit("transcode", {"path": "x"})
        with pytest.raises(QuotaExceededError) as info:
            await jobs.submit("transcode", {"path": "y"})
        body = info.value.body
        assert body["field"] == "monthly_attempts"
        assert "client 'small' (plan 'tiny')" in body["error"] and body["detail"]["limit"] == 1


async def test_client_api_can_be_turned_off() -> None:
    async with running_stack(enable_client_api=False) as stack, httpx.AsyncClient(base_url=stack.url) as http:
        headers = {"X-Client-Token": CLIENT_TOKEN}
        assert (await http.post("/api/v1/jobs/transcode", json={}, headers=headers)).status_code == 404
        assert (await http.get("/api/v1/jobs", headers=headers)).status_code == 404
        assert (await http.get("/_public/health")).status_code == 200


async def test_sync_job_client() -> None:
    async with running_stack() as stack, transcoder(make_worker(stack.url)):

        def use() -> tuple[str, str]:
            with JobClient(stack.url, token=CLIENT_TOKEN) as jobs:
                job_id = jobs.submit("transcode", {"path": "s"})
                return job_id, jobs.wait(job_id, timeout_s=10).status

        _, status = await asyncio.to_thread(use)
        assert status == "finished"


async def test_drain_command_from_the_admin_api_stops_the_worker() -> None:
    async with running_stack() as stack:
        worker = transcoder(make_worker(stack.url))
        await worker.start()
        await worker.wait_registered(5)
        async with httpx.AsyncClient(base_url=stack.url, headers={"X-Client-Token": CLIENT_TOKEN}) as http:
            r = await http.post("/api/v1/admin/workers/w1/drain")
            assert r.status_code == 200
        await asyncio.wait_for(worker.wait_stopped(), 10)
        assert worker.state == "stopped"
        assert "w1" not in stack.server.app.state.podium.workers  # deregistered


async def test_worker_with_a_wrong_token_stops_with_an_auth_error() -> None:
    from podium.worker import WorkerAuthError

    async with running_stack() as stack:
        worker = transcoder(Worker(worker_id="intruder", server_url=stack.url, token="wrong"))
        await worker.start()
        with pytest.raises(WorkerAuthError):
            await asyncio.wait_for(worker.wait_stopped(), 10)


async def test_worker_reconnects_when_the_server_comes_back() -> None:
    engine = make_engine()
    async with running_stack(engine) as first:
        port = int(first.url.rsplit(":", 1)[1])
        url = first.url
    # The server is away; the worker keeps trying with backoff.
    worker = transcoder(make_worker(url, backoff_max_s=0.2))
    await worker.start()
    try:
        async with (
            running_stack(engine, port=port) as second,
            AsyncJobClient(second.url, token=CLIENT_TOKEN) as jobs,
        ):
            await worker.wait_registered(10)
            job = await jobs.wait(await jobs.submit("transcode", {"path": "late"}), timeout_s=10)
            assert job.status == "finished"
    finally:
        await worker.stop()
