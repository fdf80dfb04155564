"""Two engines on one store: a standby runs alongside an engine that is SIGKILLed mid-load. Every job
finishes, each task result applied once: no engine decides on a stale cached record (issue 22)."""

from __future__ import annotations

import asyncio
import collections
import uuid
from pathlib import Path

import pytest

from podium.clock import ManualClock
from podium.engine import OrchestratorEngine
from podium.store import Store
from tests.engine import crash_child
from tests.engine.conftest import EventLog, make_engine
from tests.engine.test_crash_recovery import N, kill_mid_flight
from tests.engine.test_faults import one_task

BACKENDS = ["sqlite", "postgres"]  # one more entry ("redis") once that store lands


@pytest.fixture(params=BACKENDS)
async def store_target(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield str(tmp_path / "two.db")
        return
    from tests.conformance.conftest import drop_pg_schema

    url = f"{request.getfixturevalue('postgres_dsn')}?schema=podium_t_two_{uuid.uuid4().hex[:10]}"
    try:
        yield url
    finally:
        await drop_pg_schema(url)


async def test_standby_alongside_a_killed_engine_finishes_every_job(
    store_target: str, tmp_path: Path
) -> None:
    store = crash_child.store(store_target)
    standby = OrchestratorEngine(store, crash_child.config(), serve_http=False)
    standby.register_blueprint(crash_child.blueprint())
    standby.add_worker(crash_child.worker())
    async with standby:
        # The standby takes tasks too, so the child may never complete a third of them itself (CI saw it
        # wait 30 s for that): it is killed once it has completed some, with jobs still in flight.
        await kill_mid_flight(store_target, tmp_path, ready_after=N // 15)
        jobs = await standby.list_jobs(limit=N + 1)
        assert len(jobs) == N
        # Well within the in-process workers' 30 s long poll: a poll waiting in the standby is woken by
        # the dead engine's enqueues (PostgreSQL: NOTIFY; SQLite: the store watches PRAGMA data_version)
        views = await asyncio.wait_for(asyncio.gather(*(standby.wait_for_job(j.job_id) for j in jobs)), 20)
        stuck = [(v.job_id, v.status) for v in views if v.status != "finished"]
        assert not stuck, stuck
        for v in views:
            i = v.initial_data["i"]
            assert (v.state_history["a"], v.state_history["b"]) == (2 * i, 2 * i + 1)
            history = await standby.job_history(v.job_id)
            completed = collections.Counter(e.data["task_id"] for e in history if e.event == "task_completed")
            tasks = await standby.list_tasks(v.job_id)
            assert len(tasks) == 2 and all(t.status == "completed" for t in tasks)
            assert completed == {t.task_id: 1 for t in tasks}  # each result applied once
            assert [e.event for e in history].count("job_finished") <= 1
    await store.close()


async def test_a_result_is_decided_on_the_store_s_current_job_not_a_cached_one(store_target: str) -> None:
    """Engine A caches job X waiting for t1; engine B applies t1 and moves X on to wait for t2; t2's result
    handed to A must advance X (A's cached record is stale), never be ignored as "job is waiting_for_worker"."""
    a_store, b_store = crash_child.store(store_target), crash_child.store(store_target)
    a = OrchestratorEngine(a_store, crash_child.config(), serve_http=False)
    b = OrchestratorEngine(b_store, crash_child.config(), serve_http=False)
    for e in (a, b):
        e.register_blueprint(crash_child.blueprint())
    async with a, b:
        job_id = await a.create_job("crashy", {"i": 5})
        t1 = await b.take_task("w1", ["double"], wait_s=10)
        assert t1 is not None and t1.job_id == job_id
        await a.get_job(job_id)  # A reads (and may cache) the job while it waits for t1
        assert await b.complete_task(t1.task_id, "success", {"a": 10}, token=t1.token) == "applied"
        t2 = await a.take_task("w2", ["inc"], wait_s=10)
        assert t2 is not None and t2.job_id == job_id
        assert await a.complete_task(t2.task_id, "success", {"b": 11}, token=t2.token) == "applied"
        view = await asyncio.wait_for(a.wait_for_job(job_id), 10)
        assert view.status == "finished" and view.state_history["b"] == 11
        ignored = [e for e in await a.job_history(job_id) if e.event == "result_ignored"]
        assert ignored == []
    await a_store.close()
    await b_store.close()


@pytest.mark.parametrize("kind", ["dispatch", "result"])
async def test_a_timeout_armed_on_two_instances_acts_once(manual_store: Store, kind: str) -> None:
    """Both the instance that dispatched (or whose worker took) a task and the recovery owner, which re-reads
    open tasks, arm its timeout; both fire. The timeout is decided on the task's current record and
    written under its version, so it acts once: one ``task_timeout`` entry, the job ends once."""
    clock = manual_store.clock
    assert isinstance(clock, ManualClock)
    cfg = {"JOB_MAX_RETRIES": 0}
    owner, other = make_engine(manual_store, **cfg), make_engine(manual_store, **cfg)
    timeout = {"dispatch_timeout": 60} if kind == "dispatch" else {"result_timeout": 60}
    for e in (owner, other):
        e.register_blueprint(one_task(**timeout))
    async with owner, other:
        assert owner.is_recovery_owner and not other.is_recovery_owner  # one recovery owner per store
        log, owner_log = EventLog(other), EventLog(owner)
        job_id = await other.create_job("one")
        await log.wait(lambda e: e.type == "job_waiting")
        if kind == "result":  # a remote worker takes it through the other instance (its result timer)
            assert await other.take_task("w", ["work"]) is not None
        await owner.recovery.recover()  # the owner's periodic rescan of open tasks: it arms the same timer
        assert len(owner.core.timers) == 1
        await clock.advance(60)
        await _ended_on_either((log, owner_log), job_id)
        job = await other.get_job(job_id)
        history = await other.job_history(job_id)
    assert job.status in ("finished", "quarantined", "failed"), job.status
    assert [e.event for e in history].count("task_timeout") == 1
    assert [e.event for e in history].count("job_archived") == 1


async def _ended_on_either(logs: tuple[EventLog, ...], job_id: str) -> None:
    """Wait for the job's terminal event, committed by whichever instance applied it."""
    ends = {"job_finished", "job_failed", "job_quarantined", "job_cancelled"}
    waits = [asyncio.ensure_future(lg.wait(lambda e: e.type in ends and e.job_id == job_id)) for lg in logs]
    done, pending = await asyncio.wait(waits, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    for w in pending:
        w.cancel()
    assert done, f"job {job_id} did not end on any instance"
