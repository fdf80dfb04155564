"""Node status tracking on a virtual clock: which requests the workcell makes to its nodes, and when; and
the workcell-level admin commands (pause/resume and lock/unlock of the whole workcell)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from podium.clock import ManualClock
from podium.store import MemoryStore
from podium.workcell import (
    InProcessNode,
    WorkcellDefinition,
    WorkcellEngine,
    WorkcellManagerSettings,
    load_workflow_definition,
)

T0 = 1_700_000_000.0


def _boom() -> None:
    raise RuntimeError("the instrument jammed")


class CountingNode(InProcessNode):
    """An in-process node that records when each status/info/state request came (virtual time)."""

    def __init__(self, name: str, clock: ManualClock, **kw: Any) -> None:
        super().__init__(name, {"noop": lambda: None, "boom": _boom}, clock=clock, **kw)
        self.requests: list[tuple[str, float]] = []
        self.down = False

    def _seen(self, what: str) -> None:
        self.requests.append((what, self.clock.now() - T0))
        if self.down:
            raise ConnectionError(f"{self.name} does not answer")

    async def get_status(self) -> dict[str, Any]:
        self._seen("status")
        return await super().get_status()

    async def get_info(self) -> dict[str, Any]:
        self._seen("info")
        return await super().get_info()

    async def get_state(self) -> dict[str, Any]:
        self._seen("state")
        return await super().get_state()

    def times(self, what: str = "status") -> list[float]:
        return [t for w, t in self.requests if w == what]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def cell(
    clock: ManualClock, tmp_path: Path
) -> AsyncIterator[tuple[WorkcellEngine, dict[str, CountingNode]]]:
    nodes = {"a": CountingNode("a", clock), "b": CountingNode("b", clock)}
    workcell = WorkcellDefinition(name="cell", nodes={n: f"inprocess://{n}" for n in nodes})
    settings = WorkcellManagerSettings(
        scheduler_update_interval=100.0, node_update_interval=1.0, node_info_update_interval=8.0
    )
    engine = WorkcellEngine(
        workcell,
        store=MemoryStore(clock=clock),
        data_dir=tmp_path,
        settings=settings,
        clock=clock,
        connectors=dict(nodes),
    )
    async with engine:
        yield engine, nodes


async def settle() -> None:
    """Let every task the clock woke run to its next wait (each request goes through a few tasks)."""
    for _ in range(30):
        await asyncio.sleep(0)


async def run_for(clock: ManualClock, seconds: float, step_s: float = 0.5) -> None:
    """Move virtual time on in small steps (every poll in these tests falls on a step)."""
    for _ in range(int(seconds / step_s)):
        await clock.advance(step_s)
        await settle()


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


async def test_idle_nodes_are_polled_with_back_off(
    cell: tuple[WorkcellEngine, dict[str, CountingNode]], clock: ManualClock
) -> None:
    engine, nodes = cell
    await run_for(clock, 60)
    # Status at start, then at intervals doubling from node_update_interval (1 s) to
    # node_info_update_interval (8 s): 10 reads in a minute instead of 61.
    assert nodes["a"].times() == [0.0, 1.0, 3.0, 7.0, 15.0, 23.0, 31.0, 39.0, 47.0, 55.0]
    assert nodes["b"].times() == nodes["a"].times()
    # Info and state only at start and about every node_info_update_interval.
    assert nodes["a"].times("info") == nodes["a"].times("state") == [0.0, 15.0, 23.0, 31.0, 39.0, 47.0, 55.0]
    assert engine.nodes["a"].ready


async def test_a_node_running_a_step_is_not_polled_and_is_read_again_a_little_after(
    cell: tuple[WorkcellEngine, dict[str, CountingNode]], clock: ManualClock
) -> None:
    engine, nodes = cell
    node = nodes["a"]
    node.gate = asyncio.Event()
    run = await engine.submit(
        load_workflow_definition({"name": "w", "steps": [{"node": "a", "action": "noop"}]})
    )
    await asyncio.wait_for(node.acknowledged.wait(), 5)
    before = len(node.times())
    await run_for(clock, 30)
    assert len(node.times()) == before, "polled while its action was running"
    assert len(nodes["b"].times()) > before  # the other node is still watched
    node.gate.set()
    await asyncio.wait_for(engine.wait_for(run.workflow_id), 5)
    await settle()
    # The action succeeded: the node keeps the status it had (no request on the step's way out, which a
    # MADSci node would answer at the cost of the next step), read again after node_update_interval ...
    assert node.times()[before:] == []
    # ... then the usual back-off.
    await run_for(clock, 10)
    assert node.times()[before:] == [31.0, 33.0, 37.0]


async def test_after_a_failed_action_the_node_is_read_at_once(
    cell: tuple[WorkcellEngine, dict[str, CountingNode]], clock: ManualClock
) -> None:
    engine, nodes = cell
    await run_for(clock, 20)
    before = len(nodes["a"].times())
    run = await engine.submit(
        load_workflow_definition({"name": "w", "steps": [{"node": "a", "action": "boom"}]})
    )
    done = await asyncio.wait_for(engine.wait_for(run.workflow_id), 5)
    await settle()
    assert done.status.failed
    # The node may be errored now: its status is read straight away, not at the next back-off tick.
    assert nodes["a"].times()[before:] == [20.0]


async def test_a_node_a_step_waits_for_is_polled_every_interval_until_ready(
    cell: tuple[WorkcellEngine, dict[str, CountingNode]], clock: ManualClock
) -> None:
    engine, nodes = cell
    await run_for(clock, 20)  # both nodes backed off to 8 s
    nodes["a"].ready = False
    await engine.poll_nodes()
    run = await engine.submit(
        load_workflow_definition({"name": "w", "steps": [{"node": "a", "action": "noop"}]})
    )
    await asyncio.wait_for(
        engine.wait_for(run.workflow_id, until=lambda w: bool(w.scheduler_metadata.reasons)), 5
    )
    start, b_start = len(nodes["a"].times()), len(nodes["b"].times())
    await run_for(clock, 5)
    assert gaps(nodes["a"].times()[start - 1 :]) == [1.0] * 5  # needed: every node_update_interval
    assert len(nodes["b"].times()) == b_start  # not needed: still backed off
    nodes["a"].ready = True
    await clock.advance(1.0)
    done = await asyncio.wait_for(engine.wait_for(run.workflow_id), 5)
    assert done.status.completed


async def test_unreachable_node_is_disconnected_backs_off_and_recovers(
    cell: tuple[WorkcellEngine, dict[str, CountingNode]], clock: ManualClock
) -> None:
    engine, nodes = cell
    await run_for(clock, 1)  # a read at 1 s: next at 3 s
    nodes["a"].down = True
    await run_for(clock, 2)  # first failure at 3 s: the last status is kept, checked again 1 s later
    assert engine.nodes["a"].ready and not engine.nodes["a"].status.get("disconnected")  # type: ignore[union-attr]
    await run_for(clock, 1)  # second failure: disconnected
    assert engine.nodes["a"].status is not None and engine.nodes["a"].status["disconnected"] is True
    assert engine.nodes["a"].status_description == "disconnected"
    run = await engine.submit(
        load_workflow_definition({"name": "w", "steps": [{"node": "a", "action": "noop"}]})
    )
    waiting = await asyncio.wait_for(
        engine.wait_for(run.workflow_id, until=lambda w: bool(w.scheduler_metadata.reasons)), 5
    )
    assert waiting.scheduler_metadata.reasons == ["Node a not ready: disconnected"]
    await run_for(clock, 30)
    failures = [t for t in nodes["a"].times() if t >= 3.0]
    # Checked again 1 s after the first failure; then, as the step starts waiting for it, 1 s after the
    # last read; from there it backs off, although a step waits for it.
    assert gaps(failures) == [1.0, 1.0, 4.0, 8.0, 8.0, 8.0]
    nodes["a"].down = False
    await run_for(clock, 8)
    done = await asyncio.wait_for(engine.wait_for(run.workflow_id), 5)
    assert done.status.completed and engine.nodes["a"].ready


async def test_workcell_pause_and_lock_hold_every_step(
    cell: tuple[WorkcellEngine, dict[str, CountingNode]], clock: ManualClock, tmp_path: Path
) -> None:
    engine, nodes = cell
    answers = await engine.admin("pause")
    assert engine.status.paused and not engine.status.ok
    assert answers == []  # in-process nodes offer lock, unlock, reset, shutdown: pause is not forwarded
    run = await engine.submit(
        load_workflow_definition({"name": "w", "steps": [{"node": "a", "action": "noop"}]})
    )
    held = await asyncio.wait_for(
        engine.wait_for(run.workflow_id, until=lambda w: bool(w.scheduler_metadata.reasons)), 5
    )
    assert "Workcell is paused or not ok" in held.scheduler_metadata.reasons
    assert engine.state().status.paused
    await engine.admin("lock")
    assert engine.status.locked and nodes["a"].locked and nodes["b"].admin_log == ["lock"]
    await engine.admin("resume")
    await engine.schedule_once()
    assert not nodes["a"].calls  # still locked
    # The workcell's status is kept in the store: a restart keeps it paused/locked.
    again = WorkcellEngine(
        engine.workcell, store=engine.store, data_dir=tmp_path, clock=clock, connectors=dict(nodes)
    )
    await again.loader.status()
    assert again.status.locked and not again.status.paused
    await engine.admin("unlock")
    done = await asyncio.wait_for(engine.wait_for(run.workflow_id), 5)
    assert done.status.completed and not nodes["a"].locked
