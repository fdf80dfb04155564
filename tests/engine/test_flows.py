"""Fan-out/fan-in, human approval, child blueprints, events, backpressure, archive."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from podium.engine import (
    ActionFactory,
    Blueprint,
    EngineEvent,
    InProcessWorker,
    JobStateError,
)
from podium.store import Store
from tests.engine.conftest import EventLog, finished, make_engine


async def test_fan_out_fan_in(store: Store) -> None:
    bp = Blueprint("fan")

    @bp.handler(is_start=True)
    async def start(initial_data: dict[str, Any], actions: ActionFactory) -> None:
        tasks: list[dict[str, Any]] = [
            {"task_type": "square", "params": {"n": n}} for n in initial_data["ns"]
        ]
        tasks.append({"type": "square", "params": {"n": 10}})  # Avtomatika 1.0b30's `type` key
        actions.dispatch_parallel(tasks=tasks, aggregate_into="collect")

    @bp.aggregator
    async def collect(
        aggregation_results: dict[str, Any], state_history: dict[str, Any], actions: ActionFactory
    ):
        state_history["total"] = sum(r["data"]["sq"] for r in aggregation_results.values())
        actions.go_to("end")

    @bp.handler(is_end=True)
    async def end() -> None: ...

    engine = make_engine(store)
    engine.register_blueprint(bp)
    w = InProcessWorker("w", capacity=3)
    w.add_skill("square", lambda params: {"status": "success", "data": {"sq": params["n"] ** 2}})
    engine.add_worker(w)
    async with engine:
        job = await finished(engine, await engine.create_job("fan", {"ns": [1, 2, 3, 4]}))
    assert job.status == "finished"
    assert job.state_history["total"] == 1 + 4 + 9 + 16 + 100
    assert job.result == 130


async def test_human_approval_from_python(store: Store) -> None:
    bp = Blueprint("approve")

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        actions.await_human_approval(
            "slack", "ship it?", transitions={"approved": "ship", "rejected": "stop"}
        )

    @bp.handler(is_end=True)
    async def ship(state_history: dict[str, Any]) -> None:
        state_history["ship"] = state_history["approver"]

    @bp.handler(is_end=True)
    async def stop() -> None: ...

    engine = make_engine(store)
    engine.register_blueprint(bp)
    log = EventLog(engine)
    async with engine:
        a, b = await engine.create_job("approve"), await engine.create_job("approve")
        for job_id in (a, b):
            await log.wait(lambda e, j=job_id: e.job_id == j and e.type == "job_waiting")  # type: ignore[misc]
        view = await engine.get_job(a)
        assert view.status == "waiting_for_approval" and view.waiting is not None
        assert view.waiting["message"] == "ship it?"
        with pytest.raises(JobStateError, match="maybe"):
            await engine.resolve_approval(a, "maybe")
        await engine.approve(a, {"approver": "ann"})
        await engine.reject(b, {"why": "no"})
        ja, jb = await finished(engine, a), await finished(engine, b)
        with pytest.raises(JobStateError):
            await engine.approve(a)
    assert (ja.state, ja.state_history["ship"]) == ("ship", "ann")
    assert (jb.state, jb.state_history["why"]) == ("stop", "no")


async def test_child_blueprint_result_resumes_parent(store: Store) -> None:
    child = Blueprint("child", input_schema={"type": "object", "required": ["n"]})

    @child.handler(is_start=True)
    async def cstart(n: int, state_history: dict[str, Any], actions: ActionFactory) -> None:
        if n < 0:
            raise ValueError("negative")
        state_history["cend"] = {"doubled": n * 2}
        actions.go_to("cend")

    @child.handler(is_end=True)
    async def cend() -> None: ...

    parent = Blueprint("parent")

    @parent.handler(is_start=True)
    async def start(initial_data: dict[str, Any], actions: ActionFactory) -> None:
        actions.run_blueprint(
            "child", {"n": initial_data["n"]}, transitions={"success": "ok", "failure": "ko"}
        )

    @parent.handler(is_end=True)
    async def ok(doubled: int, state_history: dict[str, Any]) -> None:
        state_history["ok"] = doubled

    @parent.handler(is_end=True)
    async def ko() -> None: ...

    engine = make_engine(store)
    engine.register_blueprint(child)
    engine.register_blueprint(parent)
    async with engine:
        good = await finished(engine, await engine.create_job("parent", {"n": 4}))
        bad = await finished(engine, await engine.create_job("parent", {"n": -1}))
    assert (good.status, good.state, good.state_history["ok"]) == ("finished", "ok", 8)
    assert (bad.status, bad.state) == ("finished", "ko")
    outcome = next(v for k, v in bad.state_history.items() if k.startswith("sub_job_"))
    assert outcome["outcome"] == "failure" and "negative" in outcome["error"]["message"]
    children = await engine.list_jobs(blueprint="child")
    assert {c.parent_job_id for c in children} == {good.job_id, bad.job_id}


class Score(BaseModel):
    value: int


async def test_send_event_validated_and_emitted(store: Store) -> None:
    bp = Blueprint("events")
    bp.event("scored", Score)

    @bp.handler(is_start=True, is_end=True)
    async def start(initial_data: dict[str, Any], actions: ActionFactory) -> None:
        actions.send_event(initial_data["name"], {"value": initial_data["value"]})

    engine = make_engine(store)
    engine.register_blueprint(bp)
    seen: list[EngineEvent] = []
    engine.subscribe(lambda e: seen.append(e) if e.type == "blueprint_event" else None)
    async with engine:
        ok = await finished(engine, await engine.create_job("events", {"name": "scored", "value": 3}))
        bad = await finished(engine, await engine.create_job("events", {"name": "scored", "value": "x"}))
        undeclared = await finished(engine, await engine.create_job("events", {"name": "other", "value": 1}))
    assert ok.status == "finished"
    assert [e.data for e in seen] == [{"name": "scored", "payload": {"value": 3}}]
    assert bad.status == "failed" and bad.error is not None and bad.error["field"] == "value"
    assert undeclared.status == "failed" and "not declared" in undeclared.error["message"]  # type: ignore[index]


async def test_events_cover_the_lifecycle(store: Store) -> None:
    bp = Blueprint("ev")

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        actions.dispatch_task("t", {}, transitions={"success": "end"})

    @bp.handler(is_end=True)
    async def end() -> None: ...

    engine = make_engine(store)
    engine.register_blueprint(bp)
    w = InProcessWorker("w")
    w.add_skill("t", lambda: None)
    engine.add_worker(w)
    types: list[str] = []

    async def listener(e: EngineEvent) -> None:  # async listeners are awaited
        types.append(e.type)

    engine.subscribe(listener)
    async with engine:
        await finished(engine, await engine.create_job("ev"))
    assert [t for t in types if t != "worker_registered"] == [
        "job_created",
        "task_dispatched",
        "job_waiting",
        "task_taken",
        "task_completed",
        "transition",
        "job_finished",
    ]
    assert [w.worker_id for w in await engine.list_workers()] == ["w"]


async def test_backpressure_bounds_concurrent_handlers(store: Store) -> None:
    bp = Blueprint("slow")
    running = 0
    peak = 0
    gate = asyncio.Event()
    three = asyncio.Event()

    @bp.handler(is_start=True, is_end=True)
    async def start() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 3:
            three.set()
        await gate.wait()
        running -= 1

    engine = make_engine(store, EXECUTOR_MAX_CONCURRENT_JOBS=3)
    engine.register_blueprint(bp)
    async with engine:
        ids = [await engine.create_job("slow") for _ in range(10)]
        await asyncio.wait_for(three.wait(), 10)
        depth = await store.queue_depth("engine:steps")
        assert depth["leased"] == 3 and depth["ready"] == 7  # the rest wait in the store
        gate.set()
        jobs = [await finished(engine, i) for i in ids]
    assert peak == 3
    assert all(j.status == "finished" for j in jobs)


async def test_finished_jobs_are_archived_and_queryable(store: Store) -> None:
    bp = Blueprint("arch")

    @bp.handler(is_start=True, is_end=True)
    async def start(initial_data: dict[str, Any]) -> None:
        if initial_data.get("fail"):
            raise RuntimeError("nope")

    engine = make_engine(store)
    engine.register_blueprint(bp)
    t0 = store.clock.now()
    async with engine:
        ok = await finished(engine, await engine.create_job("arch", {"k": 1}))
        bad = await finished(engine, await engine.create_job("arch", {"fail": True}))
    snap = await engine.get_archived_job(ok.job_id)
    assert snap["status"] == "finished" and snap["initial_data"] == {"k": 1}
    assert snap["events"][0]["event"] == "job_created"
    assert snap["events"][-1]["event"] == "job_archived"
    failed = await engine.list_archived_jobs(status="failed")
    assert [s["job_id"] for s in failed] == [bad.job_id]
    assert len(await engine.list_archived_jobs(since=t0)) == 2
    assert await engine.list_archived_jobs(until=t0) == []
