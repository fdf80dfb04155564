"""Retries with backoff, quarantine, timeouts — all on a ManualClock: time only moves when the test says."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from podium.clock import ManualClock
from podium.engine import ActionFactory, Blueprint, InProcessWorker, TaskError, TimerQueue
from podium.store import Store
from tests.engine.conftest import EventLog, finished, make_engine


def one_task(**dispatch: Any) -> Blueprint:
    bp = Blueprint("one")

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        actions.dispatch_task("work", {}, transitions={"success": "end", "timeout": "late"}, **dispatch)

    @bp.handler(is_end=True)
    async def end() -> None: ...

    @bp.handler(is_end=True)
    async def late() -> None: ...

    return bp


async def test_timer_queue_fires_on_the_clock() -> None:
    clock = ManualClock()
    fired: list[str] = []
    done = asyncio.Event()

    async def cb(key: str, payload: Any) -> None:
        fired.append(f"{key}={payload}")
        if len(fired) == 2:
            done.set()

    timers = TimerQueue(clock, cb)
    timers.start()
    t0 = clock.now()
    timers.schedule("a", t0 + 10, 1)
    timers.schedule("b", t0 + 5, 2)
    timers.schedule("a", t0 + 20, 3)  # replaces the first "a"
    timers.schedule("c", t0 + 1, 4)
    timers.cancel("c")
    await clock.advance(9)
    assert fired == ["b=2"]
    await clock.advance(11)
    await asyncio.wait_for(done.wait(), 5)
    assert fired == ["b=2", "a=3"] and len(timers) == 0
    await timers.stop()


async def test_transient_errors_retry_with_exponential_backoff(manual_store: Store) -> None:
    clock = manual_store.clock
    assert isinstance(clock, ManualClock)
    engine = make_engine(manual_store, RETRY_BACKOFF_BASE_S=10.0, JOB_MAX_RETRIES=3)
    engine.register_blueprint(one_task())
    calls: list[int] = []

    async def flaky(attempt: int) -> dict[str, Any]:
        calls.append(attempt)
        if attempt < 3:
            raise TaskError("TRANSIENT_ERROR", "network blip")
        return {"status": "success", "data": {"ok": True}}

    w = InProcessWorker("w", skills={"work": flaky})
    engine.add_worker(w)
    log = EventLog(engine)
    async with engine:
        job_id = await engine.create_job("one")
        first = await log.wait(lambda e: e.type == "task_retry")
        assert first.data["delay_s"] == 10.0 and first.data["attempt"] == 2
        await clock.advance(9.5)
        assert calls == [1]  # not before its backoff
        await clock.advance(0.5)
        second = await log.wait(lambda e: e.type == "task_retry" and e.data["attempt"] == 3)
        assert second.data["delay_s"] == 20.0
        await clock.advance(20)
        job = await finished(engine, job_id)
    assert calls == [1, 2, 3]
    assert job.status == "finished" and job.state_history["ok"] is True


@pytest.mark.parametrize(
    ("code", "status", "attempts"),
    [
        ("RESOURCE_EXHAUSTED_ERROR", "quarantined", 3),
        ("INTERNAL_ERROR", "quarantined", 3),
        ("PERMANENT_ERROR", "quarantined", 1),
        ("SECURITY_ERROR", "quarantined", 1),
        ("DEPENDENCY_ERROR", "quarantined", 1),
        ("INVALID_INPUT_ERROR", "failed", 1),
    ],
)
async def test_error_codes(manual_store: Store, code: str, status: str, attempts: int) -> None:
    engine = make_engine(manual_store, RETRY_BACKOFF_BASE_S=0.0, JOB_MAX_RETRIES=2)
    engine.register_blueprint(one_task())
    calls: list[int] = []

    def failing(attempt: int) -> dict[str, Any]:
        calls.append(attempt)
        return {"status": "failure", "error": {"code": code, "message": "bad"}}

    engine.add_worker(InProcessWorker("w", skills={"work": failing}))
    async with engine:
        job = await finished(engine, await engine.create_job("one"))
    assert job.status == status
    assert job.error is not None and job.error["code"] == code
    assert calls == list(range(1, attempts + 1))


async def test_dispatch_timeout_fires_when_the_clock_passes_it(manual_store: Store) -> None:
    clock = manual_store.clock
    assert isinstance(clock, ManualClock)
    engine = make_engine(manual_store)
    bp = Blueprint("dt")

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        actions.dispatch_task("nobody", {}, transitions={"success": "end"}, dispatch_timeout=30)

    @bp.handler(is_end=True)
    async def end() -> None: ...

    engine.register_blueprint(bp)
    log = EventLog(engine)
    async with engine:
        job_id = await engine.create_job("dt")
        await log.wait(lambda e: e.type == "job_waiting")
        await clock.advance(29)
        assert (await engine.get_job(job_id)).status == "waiting_for_worker"
        await clock.advance(1)
        job = await finished(engine, job_id)
    assert job.status == "failed" and job.error is not None and job.error["code"] == "DISPATCH_TIMEOUT"
    assert [t.status for t in await engine.list_tasks(job_id)] == ["timed_out"]
    assert await manual_store.queue_depth("task:nobody") == {"ready": 0, "delayed": 0, "leased": 0}


async def test_dispatch_timeout_takes_a_timeout_transition(manual_store: Store) -> None:
    clock = manual_store.clock
    assert isinstance(clock, ManualClock)
    engine = make_engine(manual_store)
    engine.register_blueprint(one_task(dispatch_timeout=5))
    log = EventLog(engine)
    async with engine:
        job_id = await engine.create_job("one")
        await log.wait(lambda e: e.type == "job_waiting")
        await clock.advance(5)
        job = await finished(engine, job_id)
    assert (job.status, job.state) == ("finished", "late")


async def test_result_timeout_retries_then_quarantines(manual_store: Store) -> None:
    clock = manual_store.clock
    assert isinstance(clock, ManualClock)
    engine = make_engine(manual_store, RETRY_BACKOFF_BASE_S=0.0, JOB_MAX_RETRIES=1)
    engine.register_blueprint(one_task(result_timeout=5))
    cancelled: list[int] = []

    async def hang(attempt: int) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(attempt)
            raise

    engine.add_worker(InProcessWorker("w", skills={"work": hang}))
    log = EventLog(engine)
    async with engine:
        job_id = await engine.create_job("one")
        await log.wait(lambda e: e.type == "task_taken")
        await clock.advance(5)
        await log.wait(lambda e: e.type == "task_retry")
        await log.wait(lambda e: e.type == "task_taken" and e.ts >= clock.now())
        await clock.advance(4.9)
        assert (await engine.get_job(job_id)).status == "waiting_for_worker"
        await clock.advance(0.1)
        job = await finished(engine, job_id)
    assert job.status == "quarantined" and job.error is not None and job.error["code"] == "TIMEOUT_ERROR"
    assert cancelled == [1, 2]  # each timed-out attempt was withdrawn from the worker


async def test_timers_are_rearmed_after_restart(manual_store: Store) -> None:
    clock = manual_store.clock
    assert isinstance(clock, ManualClock)
    engine = make_engine(manual_store)
    engine.register_blueprint(one_task(dispatch_timeout=60))
    log = EventLog(engine)
    async with engine:
        job_id = await engine.create_job("one")
        await log.wait(lambda e: e.type == "job_waiting")
    # a new engine on the same store (a restart) knows nothing in memory
    engine2 = make_engine(manual_store)
    engine2.register_blueprint(one_task(dispatch_timeout=60))
    async with engine2:
        assert len(engine2.timers) == 1
        await clock.advance(60)
        job = await finished(engine2, job_id)
    assert job.state == "late"
