"""MADSci's node-less built-in steps: ``wait`` runs on the workcell's clock; ``transfer`` in a workcell
without ``transfer_capabilities`` and unknown node-less actions are refused at submission, naming the
step (planned transfers: test_transfers.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from podium.clock import ManualClock
from podium.store import MemoryStore
from podium.workcell import (
    ActionStatus,
    WorkcellDefinition,
    WorkcellEngine,
    WorkcellManagerSettings,
    WorkflowValidationError,
    load_workflow_definition,
)

from .conftest import make_nodes


async def test_wait_step_takes_its_time_on_the_clock(workcell: WorkcellDefinition, tmp_path: Path) -> None:
    clock = ManualClock()
    nodes = make_nodes()
    settings = WorkcellManagerSettings(scheduler_update_interval=30.0, node_update_interval=30.0)
    async with WorkcellEngine(
        workcell,
        store=MemoryStore(clock=clock),
        data_dir=tmp_path,
        settings=settings,
        clock=clock,
        connectors=nodes,
    ) as engine:
        definition = load_workflow_definition(
            {
                "name": "incubate",
                "parameters": [{"name": "minutes", "default": 90}],
                "steps": [
                    {"name": "load", "node": "arm", "action": "noop"},
                    {"name": "incubate", "action": "wait", "args": {"seconds": "${minutes}"}},
                    {"name": "read", "node": "reader", "action": "read"},
                ],
            }
        )
        run = await engine.submit(definition)
        waiting = await asyncio.wait_for(
            engine.wait_for(run.workflow_id, until=lambda w: w.steps[1].status == ActionStatus.RUNNING), 5
        )
        assert waiting.steps[1].node is None
        await clock.advance(89.0)
        assert not (await engine.get_workflow(run.workflow_id)).status.terminal
        assert nodes["reader"].calls == []
        await clock.advance(1.0)
        done = await asyncio.wait_for(engine.wait_for(run.workflow_id), 5)
        assert done.status.completed
        assert done.steps[1].duration is not None and done.steps[1].duration.total_seconds() == 90.0


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (
            {"name": "t", "action": "transfer", "args": {"source": "stack", "target": "deck"}},
            "step 't'.*declares no transfer_capabilities",
        ),
        ({"name": "x", "action": "shake"}, "step 'x'.*not a built-in workcell action"),
        ({"name": "w", "action": "wait"}, "step 'w'.*needs argument 'seconds'"),
        ({"name": "w", "action": "wait", "args": {"seconds": "soon"}}, "step 'w'.*number >= 0"),
    ],
)
async def test_node_less_steps_podium_cannot_run_are_refused(
    engine: WorkcellEngine, step: dict[str, object], message: str
) -> None:
    with pytest.raises(WorkflowValidationError, match=message):
        await engine.submit(load_workflow_definition({"name": "bad", "steps": [step]}))
    assert engine.active_workflows() == []
