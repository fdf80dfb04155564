"""Two engines, each serving the HTTP API, on one store (PostgreSQL, Redis): any instance answers any worker.
A worker registered with instance A is dispatched to by instance B, polls B and reports to B; the reputation
A lowers is the one B reads and acts on (issue 22: stateless API, the worker registry shared)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from podium.engine import Config, OrchestratorEngine
from podium.store import Store, open_store
from podium.wire import rxon
from tests.server.harness import running_stack
from tests.server.test_dispatch_strategy import CLIENT, headers, next_task, register, render_blueprint

BACKENDS = ["postgres", "redis"]


@pytest.fixture(params=BACKENDS)
async def store_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    if request.param == "redis":
        from tests.conformance.redis_support import redis_prefix

        async with redis_prefix(request.getfixturevalue("redis_url")) as url:
            yield url
        return
    from tests.conformance.conftest import drop_pg_schema

    url = f"{request.getfixturevalue('postgres_dsn')}?schema=podium_t_multi_{uuid.uuid4().hex[:10]}"
    try:
        yield url
    finally:
        await drop_pg_schema(url)


def engine_on(store: Store, instance: str) -> OrchestratorEngine:
    config = Config(
        DISPATCHER_CACHE_TTL_S=0,  # this test reads right after the other instance writes
        REPUTATION_MIN_THRESHOLD=0.96,  # one permanent failure (-0.05) puts a worker below it
        EXECUTOR_POLL_WAIT_S=0.2,  # a waiter re-reads a job the other instance moved this often
    )
    engine = OrchestratorEngine(store, config, instance_id=instance, serve_http=False)
    engine.register_blueprint(render_blueprint())
    return engine


async def submit(http: httpx.AsyncClient, strategy: str) -> str:
    r = await http.post("/api/v1/jobs/render", json={"initial_data": {"strategy": strategy}}, headers=CLIENT)
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


async def report(http: httpx.AsyncClient, worker_id: str, task: dict[str, Any], **result: Any) -> None:
    body = {"job_id": task["job_id"], "task_id": task["task_id"], "worker_id": worker_id, **result}
    r = await http.post(rxon.ENDPOINT_TASK_RESULT, json=body, headers=headers(worker_id))
    assert r.status_code == 200 and r.json()["status"] == "accepted", r.text


async def test_two_instances_share_workers_load_and_reputation(store_url: str) -> None:
    async with (
        open_store(store_url) as store_a,
        open_store(store_url) as store_b,
        running_stack(engine_on(store_a, "a")) as a,
        running_stack(engine_on(store_b, "b")) as b,
        httpx.AsyncClient(base_url=a.url, timeout=10) as on_a,
        httpx.AsyncClient(base_url=b.url, timeout=10) as on_b,
    ):
        # Given worker "w1" registered with instance A only (the cheaper), and "w2" with B
        await register(on_a, "w1", 1.0)
        await register(on_b, "w2", 3.0)
        # When a job for the cheapest worker is submitted to B
        job_id = await submit(on_b, "cheapest")
        # Then B dispatched it to A's worker: w2 is not offered it, w1 gets it by polling B
        assert (await next_task(on_b, "w2", 0.0)).status_code == 204
        r = await next_task(on_b, "w1", 5.0)
        assert r.status_code == 200 and r.json()["job_id"] == job_id, r.text
        task = r.json()
        # and while it runs, its heartbeat to A (which did not hand it out) extends the task's lease
        queue = "task:@w1/render"
        due = await store_a.next_due([queue])
        body = {"worker_id": "w1", "status": "busy", "current_tasks": [task["task_id"]]}
        url = rxon.ENDPOINT_HEARTBEAT.format(worker_id="w1")
        assert (await on_a.patch(url, json=body, headers=headers("w1"))).status_code == 200
        later = await store_b.next_due([queue])
        assert due is not None and later is not None and later > due
        await report(on_b, "w1", task, status="success", data={"ok": True})
        assert (await b.engine.wait_for_job(job_id, timeout_s=10)).status == "finished"
        assert (await a.engine.wait_for_job(job_id, timeout_s=10)).status == "finished"

        # When w1's next task fails for good, reported to A
        job_id = await submit(on_a, "cheapest")
        r = await next_task(on_a, "w1", 5.0)
        assert r.status_code == 200 and r.json()["job_id"] == job_id, r.text
        error = {"code": rxon.ERROR_CODE_PERMANENT, "message": "model missing"}
        await report(on_a, "w1", r.json(), status="failure", error=error)
        # Then B reads the lowered reputation, and passes w1 over (REPUTATION_MIN_THRESHOLD 0.96)
        listed = {w["worker_id"]: w for w in (await on_b.get("/api/v1/workers", headers=CLIENT)).json()}
        assert listed["w1"]["reputation"] == pytest.approx(0.95)
        assert listed["w2"]["reputation"] == 1.0
        job_id = await submit(on_b, "cheapest")
        assert (await next_task(on_a, "w1", 0.0)).status_code == 204
        r = await next_task(on_a, "w2", 5.0)  # w2 registered with B, polling A
        assert r.status_code == 200 and r.json()["job_id"] == job_id, r.text
        await report(on_a, "w2", r.json(), status="success")
        assert (await a.engine.wait_for_job(job_id, timeout_s=10)).status == "finished"

        # An order given through one instance reaches the worker through whichever one it heartbeats to
        assert (await on_a.post("/api/v1/admin/workers/w2/drain", headers=CLIENT)).status_code == 200
        url = rxon.ENDPOINT_HEARTBEAT.format(worker_id="w2")
        body = {"worker_id": "w2", "status": "idle"}
        reply = (await on_b.patch(url, json=body, headers=headers("w2"))).json()
        assert [c["command"] for c in reply["commands"]] == ["drain"]
        reply = (await on_a.patch(url, json=body, headers=headers("w2"))).json()
        assert "commands" not in reply  # handed over once
        assert (await on_b.post("/api/v1/admin/workers/nobody/drain", headers=CLIENT)).status_code == 404

        # A worker that registers again (with a new skill) through A is seen anew by B at its next heartbeat
        body = {"worker_id": "w1", "supported_skills": [{"name": "render"}, {"name": "upscale"}]}
        assert (await on_a.post(rxon.ENDPOINT_REGISTER, json=body, headers=headers("w1"))).status_code == 200
        url = rxon.ENDPOINT_HEARTBEAT.format(worker_id="w1")
        hb = {"worker_id": "w1", "status": "idle"}
        assert (await on_b.patch(url, json=hb, headers=headers("w1"))).status_code == 200
        listed = {w["worker_id"]: w for w in (await on_b.get("/api/v1/workers", headers=CLIENT)).json()}
        assert listed["w1"]["skills"] == ["render", "upscale"]
        assert listed["w1"]["reputation"] == pytest.approx(0.95)  # kept across the registration

        # Idle workers steal across instances: w2 (registered with B) is busy with a task queued for it,
        # w1 (below the threshold) may not take it, a new trusted w3 polling A does
        assert (
            await on_b.patch(
                rxon.ENDPOINT_HEARTBEAT.format(worker_id="w2"),
                json={"worker_id": "w2", "status": "busy"},
                headers=headers("w2"),
            )
        ).status_code == 200
        job_id = await submit(on_b, "cheapest")
        assert (await next_task(on_a, "w1", 0.0)).status_code == 204
        await register(on_a, "w3", 9.0)
        r = await next_task(on_a, "w3", 0.0)
        assert r.status_code == 200 and r.json()["job_id"] == job_id, r.text
        assert (await b.engine.get_task(r.json()["task_id"])).worker_id == "w3"
