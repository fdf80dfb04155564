"""Two workcell processes on one SQLite file: one owns scheduling (a store lock with a fencing token), the
other stands by and takes over when the owner stops, dies or loses its lock."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from podium.store.sqlite import SQLiteStore
from podium.workcell import (
    InProcessNode,
    WorkcellDefinition,
    WorkcellEngine,
    WorkcellManagerSettings,
    WorkflowStateError,
    load_workflow_definition,
)
from podium.workcell.engine import ACTION_KIND, OWNER_LOCK

from .conftest import make_nodes

THREE_STEPS = {
    "name": "three",
    "steps": [
        {"node": "arm", "action": "noop"},
        {"node": "lh", "action": "noop"},
        {"node": "reader", "action": "noop"},
    ],
}


def runner(workcell: WorkcellDefinition, db: Path, nodes: dict[str, InProcessNode]) -> WorkcellEngine:
    """One workcell "process": its own store connection to the shared file, the same instruments."""
    settings = WorkcellManagerSettings(
        scheduler_update_interval=0.1, node_update_interval=0.1, owner_lock_ttl_s=0.6
    )
    return WorkcellEngine(
        workcell, store=SQLiteStore(db), data_dir=db.parent, settings=settings, connectors=dict(nodes)
    )


async def until(check: Any, timeout_s: float = 5.0) -> None:
    async def wait() -> None:
        while not check():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(wait(), timeout_s)


def sent_action_ids(nodes: dict[str, InProcessNode]) -> list[str]:
    return [c.action_id for n in nodes.values() for c in n.calls]


async def test_only_the_owner_dispatches_and_the_standby_takes_over(
    workcell: WorkcellDefinition, tmp_path: Path
) -> None:
    db = tmp_path / "wc.db"
    nodes = make_nodes()
    first, second = runner(workcell, db, nodes), runner(workcell, db, nodes)
    await first.start()
    await second.start()
    try:
        # Given two processes on one file, the first to start owns it
        assert first.is_owner and not second.is_owner
        # When workflows are submitted through both
        runs = [await first.submit(load_workflow_definition(THREE_STEPS)) for _ in range(3)]
        runs += [await second.submit(load_workflow_definition(THREE_STEPS)) for _ in range(2)]
        # Then all run to the end, each action sent once, all by the owner
        for run in runs:
            assert (await first.wait_for(run.workflow_id, timeout_s=5)).status.completed
        assert len(sent_action_ids(nodes)) == len(set(sent_action_ids(nodes))) == 15
        journal = await first.store.list(ACTION_KIND, limit=100)
        assert {r.data["owner"] for r in journal} == {first.instance_id}
        assert {r.data["owner_token"] for r in journal} == {first.owner_token}
        # The standby answers reads from the store and refuses to change live state
        assert (await second.get_workflow(runs[0].workflow_id)).status.completed
        with pytest.raises(WorkflowStateError, match="standing by"):
            await second.pause(runs[0].workflow_id)
        assert second.active_workflows() == []
        # When the owner stops, the standby takes over (a new, larger fencing token) and runs new work
        token = first.owner_token
        await first.stop()
        await until(lambda: second.is_owner)
        assert second.owner_token is not None and token is not None and second.owner_token > token
        late = await second.submit(load_workflow_definition(THREE_STEPS))
        assert (await second.wait_for(late.workflow_id, timeout_s=5)).status.completed
        assert len(sent_action_ids(nodes)) == 18
    finally:
        await first.stop()
        await second.stop()
        await first.store.close()
        await second.store.close()


async def test_a_dead_owners_step_in_flight_is_reconciled_not_resent(
    workcell: WorkcellDefinition, tmp_path: Path
) -> None:
    db = tmp_path / "wc.db"
    nodes = make_nodes()
    nodes["lh"].gate = asyncio.Event()
    first, second = runner(workcell, db, nodes), runner(workcell, db, nodes)
    await first.start()
    await second.start()
    try:
        run = await first.submit(load_workflow_definition(THREE_STEPS))
        await asyncio.wait_for(nodes["lh"].acknowledged.wait(), 5)
        # The owner dies with the lh step in flight: its lock is not released, it expires.
        dead_token = first.owner_token

        async def no_release(*_: Any, **__: Any) -> bool:
            return False

        first.store.release_lock = no_release  # type: ignore[method-assign]
        await first.stop()
        assert not second.is_owner
        await until(lambda: second.is_owner)
        assert second.owner_token is not None and dead_token is not None and second.owner_token > dead_token
        nodes["lh"].gate.set()
        done = await second.wait_for(run.workflow_id, timeout_s=5)
        # The new owner reconciled the step with the node by its action id: sent once, then completed.
        assert done.status.completed
        assert len(nodes["lh"].calls) == 1 and len(nodes["reader"].calls) == 1
    finally:
        await first.stop()
        await second.stop()
        await first.store.close()
        await second.store.close()


async def test_an_owner_that_loses_its_lock_stops_dispatching(
    workcell: WorkcellDefinition, tmp_path: Path
) -> None:
    db = tmp_path / "wc.db"
    nodes = make_nodes()
    first, second = runner(workcell, db, nodes), runner(workcell, db, nodes)
    await first.start()
    await second.start()
    try:
        token = first.owner_token
        assert token is not None
        # Someone else's lock replaces the first's (as when its lease expired while it was stalled)
        await first.store.release_lock(OWNER_LOCK, first.instance_id, token)
        await until(lambda: second.is_owner and not first.is_owner)
        assert first.active_workflows() == []
        assert await first.schedule_once() == 0
        run = await first.submit(load_workflow_definition(THREE_STEPS))  # through the one standing by now
        assert (await second.wait_for(run.workflow_id, timeout_s=5)).status.completed
        journal = await second.store.list(ACTION_KIND, limit=100)
        assert {r.data["owner"] for r in journal} == {second.instance_id}
    finally:
        await first.stop()
        await second.stop()
        await first.store.close()
        await second.store.close()


async def test_a_standby_waiting_on_a_run_is_woken_by_its_end_through_the_store(
    workcell: WorkcellDefinition, tmp_path: Path, redis_url: str
) -> None:
    from podium.clock import ManualClock
    from podium.engine.keys import job_end
    from podium.store import open_store
    from tests.conformance.redis_support import redis_prefix

    async with redis_prefix(redis_url) as url:
        nodes = make_nodes()
        nodes["arm"].gate = asyncio.Event()
        settings = WorkcellManagerSettings(scheduler_update_interval=0.1, node_update_interval=0.1)
        first = WorkcellEngine(
            workcell,
            store=open_store(url),
            data_dir=tmp_path / "a",
            settings=settings,
            connectors=dict(nodes),
        )
        # The standby's clock never moves: its re-reads of the store never come, only a wake-up ends its wait.
        second = WorkcellEngine(
            workcell,
            store=open_store(url),
            data_dir=tmp_path / "b",
            settings=settings,
            connectors=dict(nodes),
            clock=ManualClock(),
        )
        await first.start()
        await second.start()
        try:
            assert first.is_owner and not second.is_owner
            # Given a run in flight on the owner, and the standby waiting for its end
            run = await first.submit(load_workflow_definition(THREE_STEPS))
            await asyncio.wait_for(nodes["arm"].acknowledged.wait(), 5)
            waiter = asyncio.create_task(second.wait_for(run.workflow_id))
            watched = job_end(run.workflow_id)
            await until(lambda: watched in second.store._waiters)
            assert not waiter.done()
            # When the owner ends the run
            nodes["arm"].gate.set()
            # Then the standby's wait ends with the completed run, read from the store
            done = await asyncio.wait_for(waiter, 5)
            assert done.status.completed and len(sent_action_ids(nodes)) == 3
        finally:
            await first.stop()
            await second.stop()
            await first.store.close()
            await second.store.close()
