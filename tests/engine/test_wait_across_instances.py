"""Waiting across instances (issue 22): a job that ends on one instance wakes ``wait_for_job`` on another at
once, through the store's wake-up (Redis pub/sub, PostgreSQL NOTIFY), not at the next re-read of the store.

The waiters' re-read interval (``EXECUTOR_POLL_WAIT_S``) is an hour here, so only the wake-up can end their
wait within the tests' bounds.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from podium.engine import OrchestratorEngine
from podium.engine.keys import STEPS_QUEUE
from podium.store import Store, open_store
from tests.engine import crash_child

HOUR = 3600.0


@pytest.fixture(params=["postgres", "redis"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    """Two store objects (two instances' connections) on one real PostgreSQL schema or Redis prefix."""
    if request.param == "redis":
        from tests.conformance.redis_support import redis_prefix

        async with redis_prefix(request.getfixturevalue("redis_url")) as url:
            pair = open_store(url), open_store(url)
            try:
                yield pair
            finally:
                await asyncio.gather(*(s.close() for s in pair))
        return
    from tests.conformance.conftest import drop_pg_schema

    url = f"{request.getfixturevalue('postgres_dsn')}?schema=podium_t_wait_{uuid.uuid4().hex[:10]}"
    pair = open_store(url), open_store(url)
    try:
        yield pair
    finally:
        await asyncio.gather(*(s.close() for s in pair))
        await drop_pg_schema(url)


def _engine(store: Store) -> OrchestratorEngine:
    engine = OrchestratorEngine(
        store,
        crash_child.config(EXECUTOR_POLL_WAIT_S=HOUR, JOB_LEASE_S=30.0, TASK_LEASE_S=30.0),
        serve_http=False,
    )
    engine.register_blueprint(crash_child.blueprint())
    return engine


async def _until(pred: Callable[[], bool]) -> None:
    """Wait (bounded) until ``pred`` holds: the other side's state, nothing to wait on here."""

    async def poll() -> None:
        while not pred():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), 10)


async def test_a_job_ended_on_one_instance_wakes_a_waiter_on_the_other(stores: tuple[Store, Store]) -> None:
    a_store, b_store = stores
    a, b = _engine(a_store), _engine(b_store)
    async with a, b:
        # Given a job created on A (A caches its record, so A's waiter does not read the store first) and
        # both its tasks run through B, with two waiters parked on A: the engine's and a second one
        job_id = await a.create_job("crashy", {"i": 4})
        waits = [asyncio.create_task(a.wait_for_job(job_id)) for _ in range(2)]
        timed = asyncio.create_task(a.wait_for_job(job_id, timeout_s=HOUR))  # the path with a deadline
        await _until(lambda: len(a.core.job_waiters.get(job_id, ())) == 3)
        t1 = await b.take_task("w", ["double"], wait_s=10)
        assert t1 is not None and t1.job_id == job_id
        assert await b.complete_task(t1.task_id, "success", {"a": 8}, token=t1.token) == "applied"
        t2 = await b.take_task("w", ["inc"], wait_s=10)
        assert t2 is not None
        assert not any(w.done() for w in (*waits, timed))
        # When B applies the last result and ends the job
        assert await b.complete_task(t2.task_id, "success", {"b": 9}, token=t2.token) == "applied"
        # Then A's waiters wake with the finished job (an hour before their next re-read)
        views = await asyncio.wait_for(asyncio.gather(*waits, timed), 10)
        assert [(v.status, v.state_history["b"]) for v in views] == [("finished", 9)] * 3
        assert job_id not in a.core.job_waiters and not a_store._waiters.get(f"job-end:{job_id}")


async def test_a_step_enqueued_on_one_instance_wakes_the_other_s_executor(
    stores: tuple[Store, Store],
) -> None:
    """A step one instance enqueues for anyone (it had no free slot) is taken by another's idle executor at
    once: the executor watches the store's steps queue."""
    a_store, b_store = stores
    b = _engine(b_store)
    async with b:
        await _until(lambda: bool(b_store._waiters.get(STEPS_QUEUE)))  # B's executor is idle, watching
        # A is not started (no executor of its own): its create_job enqueues the first step for anyone
        a = _engine(a_store)
        await a_store.open()
        try:
            job_id = await a.create_job("crashy", {"i": 1})
            # B runs the step: the job dispatches its first task
            task = await b.take_task("w", ["double"], wait_s=10)
            assert task is not None and task.job_id == job_id
        finally:
            await a_store.close()


async def test_a_task_created_on_one_instance_is_claimed_on_the_other_from_its_take(
    stores: tuple[Store, Store],
) -> None:
    """B takes a task A created (B has cached neither the task nor its job): on Redis the take returns both
    records with the lease and the claim is written on them; elsewhere B reads them. Either way the claim
    is recorded on the store's current task record and B's caches hold what the store holds."""
    a, b = _engine(stores[0]), _engine(stores[1])
    async with a, b:
        job_id = await a.create_job("crashy", {"i": 3})
        task = await b.take_task("w1", ["double"], wait_s=10)
        assert task is not None and task.job_id == job_id and task.attempt == 1 and task.worker_id == "w1"
        [view] = await a.list_tasks(job_id)
        assert (view.task_id, view.status, view.worker_id) == (task.task_id, "running", "w1")
        stored = await stores[1].get("task", task.task_id)
        assert stored is not None and b.core.tasks[task.task_id] == stored
        job = await stores[1].get("job", job_id)
        assert job is not None and b.core.jobs[job_id].version == job.version
        assert await b.complete_task(task.task_id, "success", {"a": 6}, token=task.token) == "applied"
        second = await a.take_task("w2", ["inc"], wait_s=10)
        assert second is not None and second.job_id == job_id
        assert await a.complete_task(second.task_id, "success", {"b": 7}, token=second.token) == "applied"
        tasks = {t.task_id: t for t in await b.list_tasks(job_id)}
        assert {tasks[task.task_id].status, tasks[second.task_id].status} == {"completed"}
        assert (
            tasks[task.task_id].result == {"status": "success", "data": {"a": 6}, "error": None}
            and tasks[second.task_id].worker_id == "w2"
        )


async def test_a_waiter_on_an_instance_that_cached_the_job_sees_an_end_made_elsewhere_before_it_waited(
    stores: tuple[Store, Store],
) -> None:
    """A's cache still holds the job as A created it; B ended it before A's waiter registered (no wake-up is
    coming): the waiter reads the store first and returns at once, not at its next re-read (an hour here)."""
    a_store, b_store = stores
    a, b = _engine(a_store), _engine(b_store)
    async with a, b:
        # Given a job created on A, run to its end through B
        job_id = await a.create_job("crashy", {"i": 2})
        for skill, result in (("double", {"a": 4}), ("inc", {"b": 5})):
            task = await b.take_task("w", [skill], wait_s=10)
            assert task is not None and task.job_id == job_id
            assert await b.complete_task(task.task_id, "success", result, token=task.token) == "applied"
        ended = await asyncio.wait_for(b.wait_for_job(job_id), 10)
        # A still holds the job in its cache (as it created it, unless its executor ran the end step)
        assert ended.status == "finished" and job_id in a.core.jobs
        # When A is asked to wait for it afterwards; Then it answers with the finished job
        view = await asyncio.wait_for(a.wait_for_job(job_id), 10)
        assert (view.status, view.state_history["b"]) == ("finished", 5)


async def test_takes_read_the_records_only_while_the_instance_misses_them(
    stores: tuple[Store, Store],
) -> None:
    """An instance whose takes find their tasks in its cache (it created them) stops asking the take for
    their records; tasks created elsewhere bring the reads back. Claims are right either way."""
    a, b = _engine(stores[0]), _engine(stores[1])
    async with a, b:
        assert a.tasks._fetch() is not None  # at first a take reads the records (as before any take)
        for i in range(12):  # A takes the tasks it created: every one cached
            job_id = await a.create_job("crashy", {"i": i})
            task = await a.take_task("w1", ["double"], wait_s=10)
            assert task is not None and task.job_id == job_id
        assert a.tasks._fetch() is None
        for i in range(3):  # then tasks B created: missing from A's cache
            job_id = await b.create_job("crashy", {"i": i})
            task = await a.take_task("w1", ["double"], wait_s=10)
            assert task is not None and task.job_id == job_id
            stored = await stores[0].get("task", task.task_id)
            assert stored is not None and a.core.tasks[task.task_id] == stored and stored.status == "running"
        assert a.tasks._fetch() is not None
