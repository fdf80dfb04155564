"""Tracing (extra otel): spans per job, state, task, workflow step and flow node, from the event streams,
exported to the SDK's in-memory exporter; remote workers get each task's W3C traceparent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from podium.engine import ActionFactory, Blueprint, InProcessWorker, TaskError
from podium.ops import Tracing, traceparent
from podium.ops.tracing import span_id, trace_id
from podium.server import ServerSettings, create_app
from podium.testing import EngineHarness, WorkcellHarness
from tests.testing.test_harness import WORKFLOW

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def two_states() -> Blueprint:
    bp = Blueprint("convert")

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        actions.go_to("work")

    @bp.handler
    async def work(actions: ActionFactory) -> None:
        actions.dispatch_task("convert", {}, transitions={"success": "done"})

    @bp.handler(is_end=True)
    async def done() -> None: ...

    return bp


def tracing() -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return Tracing(SimpleSpanProcessor(exporter)), exporter


async def test_a_job_its_states_and_its_task_form_one_trace() -> None:
    async def flaky(params: dict[str, Any], attempt: int) -> dict[str, Any]:
        if attempt == 1:
            raise TaskError("TRANSIENT_ERROR", "blip")
        await h.clock.sleep(3)
        return {"status": "success", "data": {}}

    t, exporter = tracing()
    async with EngineHarness(
        blueprints=[two_states()], workers=[InProcessWorker("w", skills={"convert": flaky})]
    ) as h:
        t.attach(h.engine)
        job_id = await h.create_job("convert")
        assert (await h.join(job_id, skip_time=True)).status == "finished"
        t.close()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"job convert", "state start", "state work", "state done", "task convert"}
    job, task = spans["job convert"], spans["task convert"]
    # one trace, named by the job id; the job span is the root, the others its children
    assert {s.context.trace_id for s in spans.values()} == {trace_id(job_id)}
    assert job.parent is None and job.context.span_id == span_id(f"job:{job_id}")
    assert all(
        s.parent is not None and s.parent.span_id == job.context.span_id
        for s in spans.values()
        if s is not job
    )
    assert job.attributes["podium.status"] == "finished" and job.attributes["podium.job_id"] == job_id
    # the task's span is the one its traceparent names; its attempts are events on it
    (task_view,) = await h.engine.list_tasks(job_id)
    assert traceparent(job_id, task_view.task_id) == (
        f"00-{task.context.trace_id:032x}-{task.context.span_id:016x}-01"
    )
    assert [e.name for e in task.events] == ["taken", "attempt failed", "retry", "taken"]
    assert (task.end_time - task.start_time) / 1e9 == 3.0  # clock time, the second attempt's 3 s
    assert spans["state work"].end_time == task.end_time


async def test_remote_workers_get_the_traceparent_of_their_task() -> None:
    t, exporter = tracing()
    async with EngineHarness(blueprints=[two_states()]) as h:
        settings = ServerSettings(client_token="ct", global_worker_token="wt")
        app = create_app(h.engine, settings, manage_engine=False, tracing=t)
        await app.state.podium.start()
        try:
            job_id = await h.create_job("convert")
            await h.settle()
            transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://podium") as http:
                headers = {"X-Worker-ID": "w1", "X-Worker-Token": "wt"}
                body = {"worker_id": "w1", "supported_skills": [{"name": "convert"}]}
                assert (
                    await http.post("/_worker/workers/register", json=body, headers=headers)
                ).status_code == 200
                r = await http.get("/_worker/workers/w1/tasks/next", headers=headers)
                assert r.status_code == 200
                task = r.json()
                assert task["tracing_context"] == {"traceparent": traceparent(job_id, task["task_id"])}
                result = {
                    "job_id": job_id,
                    "task_id": task["task_id"],
                    "worker_id": "w1",
                    "status": "success",
                    "data": {},
                }
                assert (
                    await http.post("/_worker/tasks/result", json=result, headers=headers)
                ).status_code == 200
            await h.join(job_id)
        finally:
            await app.state.podium.stop()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    tp = f"00-{spans['task convert'].context.trace_id:032x}-{spans['task convert'].context.span_id:016x}-01"
    assert tp == task["tracing_context"]["traceparent"]


async def test_workflow_steps_are_spans_under_their_run() -> None:
    t, exporter = tracing()
    async with WorkcellHarness(seed=3) as h:
        t.attach(h.workcell.jobs)
        t.attach_workcell(h.workcell)
        run = await h.submit(WORKFLOW)
        await h.join(run.workflow_id)
        t.close()
    spans = [s for s in exporter.get_finished_spans() if s.name.startswith("step ")]
    assert [s.name for s in spans] == ["step robotarm_1.transfer", "step sealer_1.seal"]
    assert {s.context.trace_id for s in spans} == {trace_id(run.workflow_id)}
    assert all(s.parent is not None and s.parent.span_id == span_id(f"job:{run.workflow_id}") for s in spans)
    seal = spans[1]
    assert (seal.end_time - seal.start_time) / 1e9 >= 20 and seal.attributes["podium.status"] == "succeeded"
    roots = [s for s in exporter.get_finished_spans() if s.parent is None]
    assert [r.context.span_id for r in roots] == [span_id(f"job:{run.workflow_id}")]


async def test_flow_nodes_are_spans() -> None:
    from podium.flow import Node, create

    async def upper(msg: str, _ctx: Any) -> str:
        return msg.upper()

    async def exclaim(msg: str, _ctx: Any) -> str:
        return msg + "!"

    t, exporter = tracing()
    a, b = Node(upper, name="upper"), Node(exclaim, name="exclaim")
    flow = create(a.to(b), middlewares=[t.flow_middleware()])
    flow.run()
    try:
        await flow.emit("hi")
        assert await flow.fetch() == "HI!"
    finally:
        await flow.stop()
    t.close()
    spans = exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == ["node exclaim", "node upper"]
    assert len({s.context.trace_id for s in spans}) == 1


async def test_nodes_get_the_traceparent_of_their_step_span(tmp_path: Path) -> None:
    import httpx as _httpx

    from podium.clock import ManualClock
    from podium.ids import traceparent_of
    from podium.nodes import NodeClient
    from podium.nodes.sim import make_sim_nodes
    from podium.workcell._http_nodes import HttpNodeConnector

    seen: list[tuple[str, str | None]] = []

    def capture(app: Any) -> Any:
        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith("/action/"):
                headers = dict(scope["headers"])
                tp = headers.get(b"traceparent")
                seen.append((scope["path"].split("/")[2], tp.decode() if tp else None))
            await app(scope, receive, send)

        return asgi

    clock = ManualClock()
    sims = make_sim_nodes(clock=clock, seed=3, work_dir=tmp_path / "nodes")
    connectors = {}
    for name, node in sims.items():
        node.ensure_started()
        transport = _httpx.ASGITransport(app=capture(node.create_app()))  # type: ignore[arg-type]
        client = NodeClient(f"http://{name}", transport=transport, clock=clock)
        connectors[name] = HttpNodeConnector(name, f"http://{name}", client=client, clock=clock)
    t, exporter = tracing()
    try:
        async with WorkcellHarness(nodes=connectors, clock=clock, data_dir=tmp_path / "wc") as h:
            t.attach(h.workcell.jobs)
            t.attach_workcell(h.workcell)
            run = await h.submit(WORKFLOW)
            done = await h.join(run.workflow_id)
            assert done.status.completed, done.status.description
            t.close()
    finally:
        for node in sims.values():
            await node.aclose()
    wf = run.workflow_id
    expected = {
        "transfer": traceparent_of(wf, f"step:{wf}:0"),
        "seal": traceparent_of(wf, f"step:{wf}:1"),
    }
    # every action request (create, start) carries its step's traceparent
    assert len(seen) >= 4 and set(seen) == set(expected.items())
    steps = {s.name: s for s in exporter.get_finished_spans() if s.name.startswith("step ")}
    seal = steps["step sealer_1.seal"]
    assert expected["seal"] == f"00-{seal.context.trace_id:032x}-{seal.context.span_id:016x}-01"
