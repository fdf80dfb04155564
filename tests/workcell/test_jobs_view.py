"""A workflow run is an engine job: a jobs server sharing the workcell's engine shows it through the jobs API."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from podium.engine import Config, OrchestratorEngine
from podium.store import MemoryStore
from podium.workcell import (
    WorkcellDefinition,
    WorkcellEngine,
    WorkcellManagerSettings,
    load_workflow_definition,
)
from tests.server.harness import CLIENT_TOKEN, running_stack

from .conftest import make_nodes


async def test_the_jobs_api_shows_a_workflow_run_as_a_job(
    workcell: WorkcellDefinition, tmp_path: Path
) -> None:
    store = MemoryStore()
    engine = OrchestratorEngine(store, Config(), serve_http=False)
    settings = WorkcellManagerSettings(scheduler_update_interval=30.0, node_update_interval=30.0)
    async with (
        running_stack(engine) as stack,
        WorkcellEngine(
            workcell,
            store=store,
            data_dir=tmp_path,
            settings=settings,
            connectors=make_nodes(),
            engine=engine,
        ) as wc,
        httpx.AsyncClient(base_url=stack.url) as http,
    ):
        definition = load_workflow_definition(
            {"name": "two", "steps": [{"node": "arm", "action": "noop"}, {"node": "lh", "action": "noop"}]}
        )
        run = await wc.submit(definition)
        assert (await wc.wait_for(run.workflow_id, timeout_s=10)).status.completed
        client = {"X-Client-Token": CLIENT_TOKEN}
        job = (await http.get(f"/api/v1/jobs/{run.workflow_id}", headers=client)).json()
        assert (
            job["status"] == "finished" and job["state"] == "completed" and job["blueprint_name"] == "chain.2"
        )
        history = (await http.get(f"/api/v1/jobs/{run.workflow_id}/history", headers=client)).json()
        events = [h["event"] for h in (history["history"] if isinstance(history, dict) else history)]
        assert events.count("task_completed") == 2 and "submitted" in events and "completed" in events
        workers = (await http.get("/api/v1/workers", headers=client)).json()
        (executor,) = [w for w in workers if w["worker_id"] == f"workcell:{workcell.name}"]
        assert executor["worker_type"] == "in_process" and executor["skills"] == ["workcell.step"]


async def test_a_stopped_workcell_executor_is_marked_offline_in_the_registry(
    workcell: WorkcellDefinition, tmp_path: Path
) -> None:
    store = MemoryStore()
    settings = WorkcellManagerSettings(scheduler_update_interval=30.0, node_update_interval=30.0)
    wc = WorkcellEngine(workcell, store=store, data_dir=tmp_path, settings=settings, connectors=make_nodes())
    async with wc:
        (online,) = [w for w in await wc.jobs.list_workers() if w.worker_id == f"workcell:{workcell.name}"]
        assert online.status == "online" and online.kind == "in_process"
    record = await store.get("worker", f"workcell:{workcell.name}")
    assert record is not None and record.status == "offline"


async def test_a_step_outlasting_its_task_lease_keeps_it_without_a_redelivery(
    workcell: WorkcellDefinition, tmp_path: Path
) -> None:
    # Given step tasks leased for 0.3 s and a step that runs longer on its node
    store = MemoryStore()
    nodes = make_nodes()
    gate = asyncio.Event()
    nodes["arm"].gate = gate
    settings = WorkcellManagerSettings(
        scheduler_update_interval=30.0, node_update_interval=30.0, owner_lock_ttl_s=0.3
    )
    async with WorkcellEngine(
        workcell, store=store, data_dir=tmp_path, settings=settings, connectors=nodes
    ) as wc:
        extended = 0
        extend = wc.jobs.extend_task

        async def counting(task_id: str, token: int, lease_s: float | None = None) -> bool:
            nonlocal extended
            kept = await extend(task_id, token, lease_s)
            extended += kept
            return kept

        wc.jobs.extend_task = counting  # type: ignore[method-assign]  # a spy: it calls through
        run = await wc.submit(
            load_workflow_definition({"name": "long", "steps": [{"node": "arm", "action": "noop"}]})
        )

        async def leases_renewed() -> None:  # the owner loop renews every 0.1 s: 0.4 s outlasts the lease
            while extended < 4:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(leases_renewed(), 10)
        gate.set()
        done = await wc.wait_for(run.workflow_id, timeout_s=10)
        # Then the step ran once and its task was never offered again (a re-take would record a token)
        assert done.status.completed and len(nodes["arm"].calls) == 1
        (task,) = await store.list("task", group=run.workflow_id)
        assert task.status == "completed" and task.data["attempt"] == 1 and task.data.get("token") is None
