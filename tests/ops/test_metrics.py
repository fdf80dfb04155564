"""Metrics from the engine's event stream (one subscriber), the workcell's runs, and /_public/metrics."""

from __future__ import annotations

import re
from typing import Any

import httpx

from podium.engine import ActionFactory, Blueprint, InProcessWorker, TaskError
from podium.ops import EngineMetrics
from podium.server import ServerSettings, create_app
from podium.testing import EngineHarness, WorkcellHarness
from tests.testing.test_harness import WORKFLOW


def flow(name: str, **dispatch: Any) -> Blueprint:
    bp = Blueprint(name)

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        actions.dispatch_task("work", {}, transitions={"success": "done", "failure": "done"}, **dispatch)

    @bp.handler(is_end=True)
    async def done() -> None: ...

    return bp


async def work(params: dict[str, Any], attempt: int) -> dict[str, Any]:
    if params.get("fail"):
        raise TaskError("PERMANENT_ERROR", "broken")
    return {"status": "success", "data": {}}


def value(m: EngineMetrics, name: str, **labels: str) -> float:
    v = m.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


async def test_jobs_tasks_queues_and_commit_latency_come_from_events() -> None:
    async def flaky(params: dict[str, Any], attempt: int) -> dict[str, Any]:
        if attempt == 1:
            raise TaskError("TRANSIENT_ERROR", "blip")
        await h.clock.sleep(2)  # the second attempt runs for 2 s of clock time
        return {"status": "success", "data": {}}

    async with EngineHarness(blueprints=[flow("ok")]) as h:
        m = EngineMetrics()
        m.attach(h.engine)
        # Given a job whose task waits 5 s for a worker, fails once, is retried and then succeeds in 2 s
        ok = await h.create_job("ok")
        await h.settle()
        assert value(m, "orchestrator_task_queue_length", task_type="work") == 1
        assert value(m, "podium_jobs_active", blueprint="ok") == 1
        await h.advance(5)
        h.engine.add_worker(InProcessWorker("w", skills={"work": flaky}))
        assert (await h.join(ok, skip_time=True)).status == "finished"
        # Then counters, histograms and gauges say so, labelled by blueprint and task type only
        assert value(m, "orchestrator_jobs_total", blueprint="ok") == 1
        assert value(m, "podium_jobs_ended_total", blueprint="ok", status="finished") == 1
        assert value(m, "podium_jobs_active", blueprint="ok") == 0
        assert value(m, "podium_tasks_dispatched_total", task_type="work") == 1
        assert value(m, "podium_task_retries_total", task_type="work") == 1
        assert value(m, "orchestrator_task_queue_length", task_type="work") == 0
        assert value(m, "podium_tasks_running", task_type="work") == 0
        assert value(m, "podium_task_wait_seconds_count", task_type="work") == 2
        assert value(m, "podium_task_wait_seconds_sum", task_type="work") == 5.0
        assert value(m, "podium_task_run_seconds_count", task_type="work", status="failure") == 1
        assert value(m, "podium_task_run_seconds_sum", task_type="work", status="success") == 2.0
        assert value(m, "orchestrator_job_duration_seconds_sum", blueprint="ok", status="finished") == 7.0
        assert value(m, "podium_store_commit_seconds_count") > 0
        m.close()


async def test_a_dispatch_timeout_and_a_failed_job() -> None:
    bp = Blueprint("strict")

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        actions.dispatch_task("nobody", {}, transitions={"success": "done"}, dispatch_timeout=30)

    @bp.handler(is_end=True)
    async def done() -> None: ...

    async with EngineHarness(blueprints=[bp]) as h:
        m = EngineMetrics()
        m.attach(h.engine)
        job = await h.create_job("strict")
        await h.settle()
        assert value(m, "orchestrator_task_queue_length", task_type="nobody") == 1
        await h.advance(30)
        assert (await h.join(job)).status == "failed"
        assert value(m, "orchestrator_task_queue_length", task_type="nobody") == 0
        assert value(m, "orchestrator_jobs_timeouts_total", task_type="nobody", type="dispatch_timeout") == 1
        assert value(m, "orchestrator_jobs_failed_total", blueprint="strict") == 1
        assert value(m, "orchestrator_job_duration_seconds_sum", blueprint="strict", status="failed") == 30.0
        m.close()
        # closed: nothing more is counted
        await h.create_job("strict")
        await h.settle()
        assert value(m, "orchestrator_jobs_total", blueprint="strict") == 1


async def test_workflow_steps_by_node_and_action_and_node_status() -> None:
    async with WorkcellHarness(seed=3) as h:
        m = EngineMetrics()
        m.attach(h.workcell.jobs)
        m.attach_workcell(h.workcell)
        run = await h.submit(WORKFLOW)
        await h.join(run.workflow_id)
        labels = {"node": "sealer_1", "action": "seal", "status": "succeeded"}
        assert value(m, "podium_workflow_steps_total", **labels) == 1
        assert (
            value(m, "podium_workflow_steps_total", node="robotarm_1", action="transfer", status="succeeded")
            == 1
        )
        assert value(m, "podium_workflow_step_seconds_sum", node="sealer_1", action="seal") >= 20
        assert value(m, "podium_workflows_ended_total", status="completed") == 1
        statuses = {
            s.labels["node"]: s.labels["status"]
            for metric in m.registry.collect()
            if metric.name == "podium_workcell_node_status"
            for s in metric.samples
        }
        assert set(statuses) == set(h.nodes) and set(statuses.values()) <= {"ready", "idle", "busy"}
        m.close()


async def test_the_server_serves_them_at_public_metrics_without_ids() -> None:
    async with EngineHarness(
        blueprints=[flow("ok")], workers=[InProcessWorker("w", skills={"work": work})]
    ) as h:
        app = create_app(h.engine, ServerSettings(client_token="ct"), manage_engine=False)
        await app.state.podium.start()
        try:
            job = await h.create_job("ok")
            await h.join(job)
            transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://podium") as http:
                text = (await http.get("/_public/metrics")).text
        finally:
            await app.state.podium.stop()
    for name in (
        'orchestrator_jobs_total{blueprint="ok"} 1.0',
        'podium_jobs_ended_total{blueprint="ok",status="finished"} 1.0',
        "orchestrator_active_workers 0.0",
        "podium_store_commit_seconds_count",
        'podium_task_run_seconds_count{status="success",task_type="work"} 1.0',
        "orchestrator_ratelimit_blocked_total",
        "podium_webhooks_total",
    ):
        assert name in text, name
    assert job not in text
    assert not re.search(r'="[0-9A-HJKMNP-TV-Z]{26}"', text)  # no ULID (job/task id) as a label value
