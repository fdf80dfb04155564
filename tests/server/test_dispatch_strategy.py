"""dispatch_strategy and max_cost over HTTP: workers' costs from their registration pick who gets the task,
and a job whose task no worker may take within max_cost is quarantined, as Avtomatika does."""

from __future__ import annotations

from typing import Any

import httpx

from podium.engine import OrchestratorEngine
from podium.engine.blueprint import Blueprint
from podium.engine.storage import MemoryStorage
from podium.testing import EngineHarness
from podium.wire import rxon
from tests.server.harness import CLIENT_TOKEN, WORKER_TOKEN, running_stack

CLIENT = {"X-Client-Token": CLIENT_TOKEN}


def render_blueprint() -> Blueprint:
    bp = Blueprint("render", api_endpoint="/jobs/render", api_version="v1")

    @bp.handler(is_start=True)
    async def start(initial_data: dict[str, Any], actions: Any) -> None:
        options = {"dispatch_strategy": initial_data["strategy"]}
        if "max_cost" in initial_data:
            options["max_cost"] = initial_data["max_cost"]
        actions.dispatch_task("render", {}, transitions={"success": "done"}, **options)

    @bp.handler(is_end=True)
    async def done() -> None:
        return None

    return bp


def render_engine(**config: Any) -> OrchestratorEngine:
    """An engine (not started) with the render blueprint on a memory store."""
    return EngineHarness(MemoryStorage(), blueprints=[render_blueprint()], **config).engine


def headers(worker_id: str) -> dict[str, str]:
    return {"X-Worker-Token": WORKER_TOKEN, "X-Worker-ID": worker_id}


async def register(http: httpx.AsyncClient, worker_id: str, cost: float) -> None:
    body = {
        "worker_id": worker_id,
        "supported_skills": [{"name": "render"}],
        "capabilities": {"hostname": "h", "ip_address": "127.0.0.1", "cost_per_skill": {"render": cost}},
    }
    r = await http.post(rxon.ENDPOINT_REGISTER, json=body, headers=headers(worker_id))
    assert r.status_code == 200, r.text


async def next_task(http: httpx.AsyncClient, worker_id: str, timeout_s: float) -> httpx.Response:
    url = rxon.ENDPOINT_TASK_NEXT.format(worker_id=worker_id)
    return await http.get(url, params={"timeout": str(timeout_s)}, headers=headers(worker_id))


async def test_cheapest_goes_to_the_cheap_worker_and_max_cost_quarantines() -> None:
    engine = render_engine()
    async with running_stack(engine) as stack, httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        await register(http, "dear", 5.0)
        await register(http, "cheap", 1.0)
        r = await http.post(
            "/api/v1/jobs/render", json={"initial_data": {"strategy": "cheapest"}}, headers=CLIENT
        )
        job_id = r.json()["job_id"]
        # the dear worker is not offered the task; the cheap one is
        assert (await next_task(http, "dear", 0.2)).status_code == 204
        r = await next_task(http, "cheap", 5.0)
        assert r.status_code == 200 and r.json()["job_id"] == job_id
        result = {"job_id": job_id, "task_id": r.json()["task_id"], "worker_id": "cheap", "status": "success"}
        assert (
            await http.post(rxon.ENDPOINT_TASK_RESULT, json=result, headers=headers("cheap"))
        ).status_code == 200
        assert (await stack.engine.wait_for_job(job_id, timeout_s=5)).status == "finished"

        # a cost limit the dear worker is over: the cheap one again, even with the default strategy
        body = {"initial_data": {"strategy": "default", "max_cost": 2}}
        job_id = (await http.post("/api/v1/jobs/render", json=body, headers=CLIENT)).json()["job_id"]
        assert (await next_task(http, "dear", 0.2)).status_code == 204
        assert (await next_task(http, "cheap", 5.0)).json()["job_id"] == job_id

        # no worker within the limit: quarantined, with Avtomatika's message
        body = {"initial_data": {"strategy": "cheapest", "max_cost": 0.5}}
        job_id = (await http.post("/api/v1/jobs/render", json=body, headers=CLIENT)).json()["job_id"]
        view = await stack.engine.wait_for_job(job_id, timeout_s=5)
        assert view.status == "quarantined"
        assert view.error == {
            "code": "NO_SUITABLE_WORKER",
            "message": "No worker meets the maximum cost (0.5) for task 'render'",
        }
        r = await http.get(f"/api/v1/jobs/{job_id}", headers=CLIENT)
        assert r.json()["status"] == "quarantined"


async def test_round_robin_takes_turns_between_workers() -> None:
    # no work stealing here: each worker polls in turn, and the first would take the second's queued tasks
    engine = render_engine(WORK_STEALING_ENABLED=False)
    async with running_stack(engine) as stack, httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        await register(http, "a", 1.0)
        await register(http, "b", 1.0)
        owners = {}
        for _ in range(4):
            body = {"initial_data": {"strategy": "round_robin"}}
            job_id = (await http.post("/api/v1/jobs/render", json=body, headers=CLIENT)).json()["job_id"]
            owners[job_id] = None
        got: dict[str, list[str]] = {"a": [], "b": []}
        for worker_id in ("a", "b"):
            while True:
                r = await next_task(http, worker_id, 0.0)
                if r.status_code == 204:
                    break
                got[worker_id].append(r.json()["job_id"])
        assert len(got["a"]) == len(got["b"]) == 2
        assert sorted(got["a"] + got["b"]) == sorted(owners)
        assert stack.engine is engine


async def test_reputation_is_scored_from_results_and_a_poor_worker_is_passed_over() -> None:
    # Given two workers of equal cost, and a threshold one permanent failure and a contract violation cross
    engine = render_engine(REPUTATION_MIN_THRESHOLD=0.8)
    async with running_stack(engine) as stack, httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        await register(http, "good", 1.0)
        await register(http, "poor", 1.0)

        async def run_one(worker_id: str, status: str, error: dict[str, Any] | None) -> None:
            body = {"initial_data": {"strategy": "round_robin"}}
            job_id = (await http.post("/api/v1/jobs/render", json=body, headers=CLIENT)).json()["job_id"]
            r = await next_task(http, worker_id, 5.0)
            assert r.status_code == 200 and r.json()["job_id"] == job_id, r.text
            result = {
                "job_id": job_id,
                "task_id": r.json()["task_id"],
                "worker_id": worker_id,
                "status": status,
            }
            if error is not None:
                result["error"] = error
            r = await http.post(rxon.ENDPOINT_TASK_RESULT, json=result, headers=headers(worker_id))
            assert r.status_code == 200, r.text

        async def reputations() -> dict[str, float]:
            listed = (await http.get("/api/v1/workers", headers=CLIENT)).json()
            return {w["worker_id"]: w["reputation"] for w in listed}

        assert await reputations() == {"good": 1.0, "poor": 1.0}
        # When "good" succeeds, and "poor" fails for good and then breaks its contract
        await run_one("good", "success", None)
        await run_one("poor", "failure", {"code": rxon.ERROR_CODE_PERMANENT, "message": "bad model"})
        assert await reputations() == {"good": 1.0, "poor": 0.95}  # a success stays within 1.0
        await run_one("good", "success", None)
        await run_one("poor", "failure", {"code": rxon.ERROR_CODE_CONTRACT_VIOLATION, "message": "no field"})
        scores = await reputations()
        assert scores["good"] == 1.0 and abs(scores["poor"] - 0.75) < 1e-9
        # Then the strategies pass "poor" over: every round-robin task now goes to "good"
        for _ in range(2):
            await run_one("good", "success", None)
        assert (await next_task(http, "poor", 0.2)).status_code == 204


async def heartbeat(http: httpx.AsyncClient, worker_id: str, status: str, current_tasks: list[str]) -> None:
    body = {"worker_id": worker_id, "status": status, "current_tasks": current_tasks}
    url = rxon.ENDPOINT_HEARTBEAT.format(worker_id=worker_id)
    r = await http.patch(url, json=body, headers=headers(worker_id))
    assert r.status_code == 200, r.text


async def task_queued_for_busy_cheap(http: httpx.AsyncClient, engine: OrchestratorEngine) -> tuple[str, Any]:
    """Workers ``cheap`` (cost 1, busy with a task of its own) and ``dear`` (cost 5, idle), and a job whose
    task goes to the cheapest worker: it waits in cheap's queue. The job's id and its task."""
    await register(http, "cheap", 1.0)
    await register(http, "dear", 5.0)
    await heartbeat(http, "cheap", "busy", ["some-task"])
    body = {"initial_data": {"strategy": "cheapest"}}
    job_id = (await http.post("/api/v1/jobs/render", json=body, headers=CLIENT)).json()["job_id"]
    [task] = await engine.list_tasks(job_id)
    return job_id, task


async def test_an_idle_worker_steals_a_task_queued_for_a_loaded_one() -> None:
    for stealing in (True, False):
        engine = render_engine(WORK_STEALING_ENABLED=stealing)
        async with running_stack(engine) as stack, httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
            # Given the cheap worker busy with a task of its own, and a dear one idle; when a task goes to
            # the cheapest worker, it waits in cheap's queue
            job_id, task = await task_queued_for_busy_cheap(http, engine)
            r = await next_task(http, "dear", 0.0)
            if not stealing:
                assert r.status_code == 204  # it stays for cheap
                assert (await next_task(http, "cheap", 0.0)).json()["task_id"] == task.task_id
                continue
            # Then the idle dear worker takes it, and its result is the task's
            assert r.status_code == 200 and r.json()["task_id"] == task.task_id, r.text
            assert (await engine.get_task(task.task_id)).worker_id == "dear"
            result = {"job_id": job_id, "task_id": task.task_id, "worker_id": "dear", "status": "success"}
            r = await http.post(rxon.ENDPOINT_TASK_RESULT, json=result, headers=headers("dear"))
            assert r.json()["status"] == "accepted", r.text
            assert (await engine.wait_for_job(job_id, timeout_s=5)).status == "finished"
            assert (await next_task(http, "cheap", 0.0)).status_code == 204


async def test_a_take_told_not_to_steal_leaves_a_loaded_workers_task_and_a_long_poll_still_steals() -> None:
    engine = render_engine(WORK_STEALING_ENABLED=True)
    async with running_stack(engine) as stack, httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        _, task = await task_queued_for_busy_cheap(http, engine)
        # what a long poll's wait takes after its first look found nothing: not from cheap's queue
        assert await engine.take_tasks("dear", ["render"], steal=False) == []
        # a long poll (its first look) steals it
        r = await next_task(http, "dear", 5.0)
        assert r.status_code == 200 and r.json()["task_id"] == task.task_id, r.text


async def test_resource_requirements_pick_the_worker_whose_registration_meets_them() -> None:
    bp = Blueprint("big", api_endpoint="/jobs/big", api_version="v1")

    @bp.handler(is_start=True)
    async def start(initial_data: dict[str, Any], actions: Any) -> None:
        actions.dispatch_task(
            "render",
            {},
            transitions={"success": "done"},
            resource_requirements={
                "resources": {"ram_gb": initial_data["ram_gb"]},
                "installed_artifacts": ["sdxl"],
            },
        )

    @bp.handler(is_end=True)
    async def done() -> None:
        return None

    engine = EngineHarness(MemoryStorage(), blueprints=[bp]).engine
    async with running_stack(engine) as stack, httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        for worker_id, ram in (("small", 8), ("large", 64)):
            body = {
                "worker_id": worker_id,
                "supported_skills": [{"name": "render"}],
                "resources": {"properties": {"ram_gb": ram}},
                "installed_artifacts": [{"name": "sdxl", "version": "1.0"}],
            }
            assert (
                await http.post(rxon.ENDPOINT_REGISTER, json=body, headers=headers(worker_id))
            ).status_code == 200
        # a task needing 32 GB goes to the large worker only (no default strategy needed: the requirement routes it)
        job_id = (
            await http.post("/api/v1/jobs/big", json={"initial_data": {"ram_gb": 32}}, headers=CLIENT)
        ).json()["job_id"]
        assert (await next_task(http, "small", 0.0)).status_code == 204
        r = await next_task(http, "large", 0.0)
        assert r.status_code == 200 and r.json()["job_id"] == job_id
        # one needing 128 GB fits nobody: quarantined with Avtomatika's reasons
        job_id = (
            await http.post("/api/v1/jobs/big", json={"initial_data": {"ram_gb": 128}}, headers=CLIENT)
        ).json()["job_id"]
        job = await engine.wait_for_job(job_id, timeout_s=5)
        assert job.status == "quarantined"
        assert "resource_mismatch" in str(job.error), job.error


async def test_tasks_queued_for_a_worker_that_left_are_stolen_by_an_idle_one() -> None:
    engine = render_engine()
    async with running_stack(engine) as stack, httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        await register(http, "cheap", 1.0)
        await register(http, "dear", 5.0)
        body = {"initial_data": {"strategy": "cheapest"}}
        job_id = (await http.post("/api/v1/jobs/render", json=body, headers=CLIENT)).json()["job_id"]
        # the cheap worker deregisters with the task still queued for it
        url = rxon.ENDPOINT_HEARTBEAT.format(worker_id="cheap")
        assert (await http.delete(url, headers=headers("cheap"))).status_code == 200
        r = await next_task(http, "dear", 0.0)
        assert r.status_code == 200 and r.json()["job_id"] == job_id, r.text
        assert stack.engine is engine
