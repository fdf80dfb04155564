"""podium.testing itself: join, advance, the workcell harness on sim nodes, and closing what it started."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from podium.clock import ManualClock, system_clock
from podium.engine import ActionFactory, Blueprint, InProcessWorker, TaskError
from podium.nodes.sim import SimNode
from podium.store import MemoryStore
from podium.testing import EngineHarness, EventLog, WorkcellHarness, drive, join, settle, wait_event


def one_task(**dispatch: Any) -> Blueprint:
    bp = Blueprint("one")

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        actions.dispatch_task("work", {}, transitions={"success": "end", "failure": "broken"}, **dispatch)

    @bp.handler(is_end=True)
    async def end() -> None: ...

    @bp.handler(is_end=True)
    async def broken() -> None: ...

    return bp


async def ok() -> dict[str, Any]:
    return {"status": "success", "data": {"ok": True}}


async def test_join_returns_the_terminal_view() -> None:
    async with EngineHarness(
        blueprints=[one_task()], workers=[InProcessWorker("w", skills={"work": ok})]
    ) as h:
        view = await h.join(await h.create_job("one"))
    assert view.status == "finished" and view.state_history["ok"] is True
    assert isinstance(h.clock, ManualClock) and h.clock.monotonic() == 0.0  # time moved not at all


async def test_join_times_out_with_a_clear_error() -> None:
    async with EngineHarness(blueprints=[one_task()]) as h:  # no worker: the job waits for one
        job_id = await h.create_job("one")
        with pytest.raises(
            TimeoutError, match=rf"job {job_id} did not end within 0.05 s .*waiting_for_worker"
        ):
            await h.join(job_id, timeout_s=0.05)


async def test_advance_fires_a_retry_delay_and_nothing_before() -> None:
    calls: list[int] = []

    async def flaky(attempt: int) -> dict[str, Any]:
        calls.append(attempt)
        if attempt == 1:
            raise TaskError("TRANSIENT_ERROR", "blip")
        return {"status": "success", "data": {}}

    worker = InProcessWorker("w", skills={"work": flaky})
    async with EngineHarness(blueprints=[one_task()], workers=[worker], RETRY_BACKOFF_BASE_S=30.0) as h:
        log = h.events
        job_id = await h.create_job("one")
        retry = await log.wait(lambda e: e.type == "task_retry")
        assert retry.data["delay_s"] == 30.0
        await h.advance(29.0)
        assert calls == [1] and (await h.engine.get_job(job_id)).status != "finished"
        await h.advance(1.0)
        assert calls == [1, 2]
        assert (await h.join(job_id)).status == "finished"


async def test_advance_fires_a_due_dispatch_timeout() -> None:
    async with EngineHarness(blueprints=[one_task(dispatch_timeout=60)]) as h:
        job_id = await h.create_job("one")
        await h.wait_event(lambda e: e.type == "job_waiting" and e.job_id == job_id)
        await h.advance(60.0)
        view = await h.join(job_id, timeout_s=1.0)
    assert view.status == "failed" and view.error is not None and view.error["code"] == "DISPATCH_TIMEOUT"


async def test_join_can_skip_time() -> None:
    async with EngineHarness(blueprints=[one_task(dispatch_timeout=3600)]) as h:
        view = await h.join(await h.create_job("one"), skip_time=True)
    assert view.status == "failed" and h.manual_clock.monotonic() >= 3600


async def test_the_functions_work_on_an_engine_you_built() -> None:
    h = EngineHarness(
        MemoryStore(), blueprints=[one_task()], workers=[InProcessWorker("w", skills={"work": ok})]
    )
    assert h.clock is system_clock  # a given store keeps its clock
    with pytest.raises(TypeError, match="not a ManualClock"):
        await h.advance(1)
    log = EventLog(h.engine)
    async with h:
        taken = asyncio.ensure_future(wait_event(h.engine, lambda e: e.type == "task_taken"))
        view = await join(h.engine, await h.engine.create_job("one"))
        await taken
    assert view.status == "finished"
    assert [e.type for e in log.of_type("job_created", "job_finished")] == ["job_created", "job_finished"]


async def test_drive_and_settle_on_the_clock() -> None:
    clock = ManualClock()
    fired: list[float] = []

    async def later() -> float:
        await clock.sleep(5)
        fired.append(clock.monotonic())
        await clock.sleep(0)
        return clock.monotonic()

    assert await drive(clock, later()) == 5.0
    task = asyncio.ensure_future(clock.wait_for(asyncio.Event().wait(), 0))  # due at once, fired by settle
    await settle(clock)
    assert task.done() and isinstance(task.exception(), TimeoutError)


WORKFLOW = {
    "name": "two_steps",
    "steps": [
        {
            "name": "plate to deck",
            "node": "robotarm_1",
            "action": "transfer",
            "locations": {"source": "plate_stack", "target": "lh_deck"},
        },
        {"name": "seal", "node": "sealer_1", "action": "seal", "args": {"time_s": 20}},
    ],
}


async def test_workcell_harness_runs_a_two_step_workflow_on_sim_nodes() -> None:
    async with WorkcellHarness(seed=3) as h:
        run = await h.submit(WORKFLOW)
        done = await h.join(run.workflow_id)
        assert done.status.completed, done.status.description
        assert [s.status.value for s in done.steps] == ["succeeded", "succeeded"]
        assert h.manual_clock.monotonic() >= 20  # the seal took 20 s of virtual time, no real time
        sealer = h.nodes["sealer_1"]
        assert isinstance(sealer, SimNode) and sealer.node_state["sealed"] is True


async def test_workcell_join_times_out_without_time_moving() -> None:
    async with WorkcellHarness() as h:
        run = await h.submit(WORKFLOW)
        with pytest.raises(TimeoutError, match=rf"workflow {run.workflow_id} did not end within 0.05 s"):
            await h.join(run.workflow_id, timeout_s=0.05, skip_time=False)


async def test_the_harnesses_close_what_they_started() -> None:
    h = EngineHarness(workers=[InProcessWorker("w", skills={"work": ok})])
    closed: list[str] = []
    close_store = h.store.close

    async def recording_close() -> None:
        closed.append("store")
        await close_store()

    h.store.close = recording_close  # type: ignore[method-assign]
    async with h:
        before = {t for t in asyncio.all_tasks() if not t.done()} - {asyncio.current_task()}
        assert before  # the executor, the recovery owner, the worker
    assert closed == ["store"]
    await h.close()  # idempotent
    left = {t for t in asyncio.all_tasks() if not t.done()} - {asyncio.current_task()}
    assert not (left & before), sorted(t.get_name() for t in left & before)

    w = WorkcellHarness()
    data_dir = w.data_dir
    async with w:
        await w.join((await w.submit(WORKFLOW)).workflow_id)
        assert data_dir.exists()
        running = {t for t in asyncio.all_tasks() if not t.done()} - {asyncio.current_task()}
        assert running
    await w.close()
    assert not data_dir.exists()
    left = {t for t in asyncio.all_tasks() if not t.done()} - {asyncio.current_task()}
    assert not (left & running), sorted(t.get_name() for t in left & running)
