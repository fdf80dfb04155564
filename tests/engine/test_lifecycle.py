"""Executor slots, step heartbeats, the single-owner recovery lock and graceful stop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from podium.clock import ManualClock
from podium.engine import ActionFactory, Blueprint, InProcessWorker
from podium.engine.engine import STEPS_QUEUE
from podium.store import Store
from tests.engine.conftest import finished, make_engine, make_store


async def settled(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait (bounded, on real time) until ``cond()`` holds: store calls on SQLite finish on a thread."""
    async with asyncio.timeout(timeout_s):
        while not cond():
            await asyncio.sleep(0.002)


def gated(gate: asyncio.Event, running: list[int], peak: list[int]) -> Blueprint:
    bp = Blueprint("gated")

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        try:
            await gate.wait()
        finally:
            running[0] -= 1
        actions.go_to("end")

    @bp.handler(is_end=True)
    async def end() -> None: ...

    return bp


async def test_inline_steps_respect_the_executor_limit(store: Store) -> None:
    gate, running, peak = asyncio.Event(), [0], [0]
    engine = make_engine(store, EXECUTOR_MAX_CONCURRENT_JOBS=2)
    engine.register_blueprint(gated(gate, running, peak))
    async with engine:
        ids = [await engine.create_job("gated") for _ in range(6)]
        for _ in range(50):
            await asyncio.sleep(0.01)
        assert running[0] == 2
        gate.set()
        views = [await finished(engine, j) for j in ids]
    assert all(v.status == "finished" for v in views)
    assert peak[0] == 2


async def test_a_long_handler_keeps_its_step_lease(manual_store: Store) -> None:
    clock = manual_store.clock
    assert isinstance(clock, ManualClock)
    gate, runs = asyncio.Event(), [0]
    bp = Blueprint("slow")

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        runs[0] += 1
        await gate.wait()
        actions.go_to("end")

    @bp.handler(is_end=True)
    async def end() -> None: ...

    engine = make_engine(manual_store, JOB_LEASE_S=3.0)
    engine.register_blueprint(bp)
    async with engine:
        job_id = await engine.create_job("slow")
        for _ in range(10):  # 10 s of clock time: without the heartbeat the lease expires after 3
            await clock.advance(1.0)
            await settled(
                lambda: all(le.expires_at > clock.now() + 1.0 for le in engine.executor.held.values())
            )
        assert await manual_store.take_now([STEPS_QUEUE], owner="thief", lease_s=1, limit=1) == []
        gate.set()
        job = await finished(engine, job_id)
    assert job.status == "finished" and runs[0] == 1


async def test_one_instance_owns_recovery_and_another_takes_over(manual_store: Store) -> None:
    clock = manual_store.clock
    assert isinstance(clock, ManualClock)
    a = make_engine(manual_store, RECOVERY_LOCK_TTL_S=3.0)
    b = make_engine(manual_store, RECOVERY_LOCK_TTL_S=3.0)
    await a.start()
    await b.start()
    try:
        assert a.is_recovery_owner and not b.is_recovery_owner
        await a.stop()  # releases the lock
        for _ in range(3):
            await clock.advance(1.0)
        await settled(lambda: b.is_recovery_owner)
        assert b.is_recovery_owner
    finally:
        await a.stop()
        await b.stop()


async def test_stop_lets_a_running_handler_finish(store: Store) -> None:
    gate, running, peak = asyncio.Event(), [0], [0]
    engine = make_engine(store, STOP_GRACE_S=10.0)
    engine.register_blueprint(gated(gate, running, peak))
    await engine.start()
    job_id = await engine.create_job("gated")
    while running[0] == 0:
        await asyncio.sleep(0.005)
    stopping = asyncio.ensure_future(engine.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()
    gate.set()
    await asyncio.wait_for(stopping, 5)
    job = await engine.get_job(job_id)
    assert (job.status, job.state) == ("running", "end")  # the handler's decision was committed


async def test_stop_gives_back_unfinished_work_at_once(store_kind: str, tmp_path: Path) -> None:
    store = make_store(store_kind, tmp_path)
    await store.open()
    bp = Blueprint("two")
    hang_step = asyncio.Event()

    @bp.handler(is_start=True)
    async def start(initial_data: dict[str, int], actions: ActionFactory) -> None:
        if initial_data["kind"] == 1:
            await hang_step.wait()  # never set in the first engine
            actions.go_to("end")
        else:
            actions.dispatch_task("work", {}, transitions={"success": "end"})

    @bp.handler(is_end=True)
    async def end() -> None: ...

    first = make_engine(store, STOP_GRACE_S=0.1, JOB_LEASE_S=300.0, TASK_LEASE_S=300.0)
    first.register_blueprint(bp)
    took = asyncio.Event()

    async def hang() -> None:
        took.set()
        await asyncio.Event().wait()

    first.add_worker(InProcessWorker("w1", skills={"work": hang}))
    await first.start()
    step_job = await first.create_job("two", {"kind": 1})
    task_job = await first.create_job("two", {"kind": 2})
    await asyncio.wait_for(took.wait(), 5)
    await first.stop()

    hang_step.set()
    second = make_engine(store, JOB_LEASE_S=300.0, TASK_LEASE_S=300.0)
    second.register_blueprint(bp)
    second.add_worker(InProcessWorker("w2", skills={"work": lambda: {"ok": True}}))
    async with second:  # leases were given back: no 300 s wait
        views = [await finished(second, j, timeout_s=20) for j in (step_job, task_job)]
    assert [v.status for v in views] == ["finished", "finished"]
    await store.close()
