"""The workcell engine: running workflows, validation at submission, lifecycle operations, conditions,
scheduling, datapoints, resource effects and crash recovery."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from podium.clock import ManualClock
from podium.store import MemoryStore, Store
from podium.store.sqlite import SQLiteStore
from podium.workcell import (
    ActionCall,
    ActionStatus,
    InProcessNode,
    ParameterError,
    ResourceDefinition,
    WorkcellDefinition,
    WorkcellEngine,
    WorkcellManagerSettings,
    WorkflowStateError,
    WorkflowValidationError,
    load_workflow_definition,
)
from podium.workcell.engine import ACTION_KIND
from podium.workcell.scheduler import Claim, WorkcellSnapshot, fifo_decisions

from .conftest import make_nodes


def wf(steps: list[dict[str, Any]], **extra: Any) -> Any:
    return load_workflow_definition({"name": extra.pop("name", "wf"), "steps": steps, **extra})


async def test_runs_steps_with_parameters_locations_and_datapoints(
    engine: WorkcellEngine, nodes: dict[str, InProcessNode]
) -> None:
    await engine.create_resource(
        ResourceDefinition(resource_name="plate_1", resource_class="plate"), parent="stack"
    )
    definition = wf(
        [
            {
                "name": "to deck",
                "node": "arm",
                "action": "transfer",
                "locations": {"source": "stack", "target": "deck"},
                "effects": [{"move": {"from": "stack", "to": "deck"}}],
            },
            {
                "name": "pipette",
                "key": "pip",
                "node": "lh",
                "action": "aspirate",
                "args": {"volume_ul": "${vol}", "well": "well_$well"},
                "effects": [{"consume": {"resource": "tips", "quantity": 1}}],
            },
            {
                "name": "read",
                "key": "read",
                "node": "reader",
                "action": "read",
                "data_labels": {"json_result": "absorbance"},
            },
        ],
        parameters=[{"name": "vol"}, {"name": "well", "default": "B2"}],
    )
    run = await engine.submit(definition, json_inputs={"vol": 50})
    done = await engine.wait_for(run.workflow_id, timeout_s=5)
    assert done.status.completed and done.state.value == "completed"
    assert [s.status for s in done.steps] == [ActionStatus.SUCCEEDED] * 3
    # Each node got only its own representation of the location.
    call = nodes["arm"].calls[0]
    assert (
        call.args["source"]["representation"] == [0, 0, 0] and call.args["target"]["location_name"] == "deck"
    )
    assert nodes["lh"].calls[0].args == {"volume_ul": 50, "well": "well_B2"}
    # Results are datapoints with labels; data_labels rename outputs.
    dp = await engine.datapoints.get(done.get_datapoint_id("read"))
    assert dp.label == "absorbance" and dp.value == {"mean": 0.5, "wavelength_nm": 600}
    assert done.get_datapoint_id("pip", "json_result") != dp.datapoint_id
    # Effects moved the plate and used a tip.
    deck = engine.get_location("deck")
    assert engine.resources.child_at(str(deck.resource_id), 0).resource_name == "plate_1"
    assert engine.resources.find("tips").quantity == 9
    assert done.start_time is not None and done.end_time is not None and done.duration_seconds is not None
    history = await engine.store.history(run.workflow_id)
    # One history for the run and its job (the same id): the job's transitions beside the workflow's own.
    events = [h.event for h in history]
    assert events[0] == "job_created" and "submitted" in events and events[-1] == "completed"
    assert events.count("task_completed") == 3 and "job_finished" in events
    job = await engine.jobs.get_job(run.workflow_id)
    assert job.status == "finished" and job.state == "completed"


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"name": "s1", "node": "ghost", "action": "noop"}, "step 's1': node 'ghost' is not in the workcell"),
        ({"name": "s2", "node": "arm", "action": "fly"}, "step 's2': node 'arm' has no action 'fly'"),
        (
            {"name": "s3", "node": "lh", "action": "aspirate", "args": {}},
            "step 's3'.*needs argument 'volume_ul'",
        ),
        (
            {
                "name": "s4",
                "node": "arm",
                "action": "transfer",
                "locations": {"source": "nowhere", "target": "deck"},
            },
            "step 's4': location 'nowhere'",
        ),
        (
            {"name": "s5", "node": "reader", "action": "read", "locations": {"plate": "stack"}},
            "step 's5': location 'stack' has no representation for node 'reader'",
        ),
        (
            {"name": "s6", "node": "arm", "action": "noop", "args": {"x": "${nope}"}},
            "step 's6'.*'\\$\\{nope\\}'",
        ),
    ],
)
async def test_bad_submissions_are_refused_naming_the_step(
    engine: WorkcellEngine, step: dict[str, Any], message: str
) -> None:
    with pytest.raises(WorkflowValidationError, match=message):
        await engine.submit(wf([step]))
    assert engine.active_workflows() == []
    assert await engine.store.count("workcell.workflow") == 0


async def test_missing_parameter_names_it(engine: WorkcellEngine) -> None:
    with pytest.raises(ParameterError, match="'vol' has no value") as exc:
        await engine.submit(
            wf(
                [{"node": "lh", "action": "aspirate", "args": {"volume_ul": "$vol"}}],
                parameters=[{"name": "vol"}],
            )
        )
    assert exc.value.parameter == "vol"


async def test_feed_forward_value_from_an_earlier_step(
    engine: WorkcellEngine, nodes: dict[str, InProcessNode]
) -> None:
    definition = wf(
        [
            {"name": "read", "key": "read", "node": "reader", "action": "read"},
            {"name": "use", "node": "lh", "action": "aspirate", "args": {"volume_ul": "${reading}"}},
        ],
        parameters={
            "feed_forward": [{"key": "reading", "step": "read", "parameter_type": "feed_forward_json"}]
        },
    )
    run = await engine.submit(definition)
    done = await engine.wait_for(run.workflow_id, timeout_s=5)
    assert done.status.completed, done.steps[1].result.errors[0].message  # type: ignore[union-attr]
    assert nodes["lh"].calls[0].args["volume_ul"] == {"mean": 0.5, "wavelength_nm": 600}
    assert done.parameter_values["reading"] == {"mean": 0.5, "wavelength_nm": 600}


async def test_failure_then_retry_from_the_failed_step(
    engine: WorkcellEngine, nodes: dict[str, InProcessNode]
) -> None:
    fail = {"on": True}

    def flaky() -> str:
        if fail["on"]:
            raise RuntimeError("gripper jammed")
        return "ok"

    nodes["arm"].actions["flaky"] = flaky
    await engine.poll_nodes(update_info=True)
    run = await engine.submit(
        wf([{"name": "a", "node": "lh", "action": "noop"}, {"name": "b", "node": "arm", "action": "flaky"}])
    )
    failed = await engine.wait_for(run.workflow_id, timeout_s=5)
    assert failed.status.failed and failed.status.current_step_index == 1
    assert failed.steps[1].result is not None and "gripper jammed" in str(
        failed.steps[1].result.errors[0].message
    )
    with pytest.raises(WorkflowStateError):
        await engine.pause(run.workflow_id)
    fail["on"] = False
    await engine.retry(run.workflow_id)
    done = await engine.wait_for(run.workflow_id, timeout_s=5)
    assert done.status.completed
    assert len(nodes["lh"].calls) == 1  # step a was not run again
    assert [r.status for r in done.steps[1].history] == [ActionStatus.FAILED, ActionStatus.SUCCEEDED]
    archived = await engine.archived_workflows()
    assert [w.workflow_id for w in archived] == [run.workflow_id]


async def test_pause_resume_and_cancel(engine: WorkcellEngine, nodes: dict[str, InProcessNode]) -> None:
    gate = asyncio.Event()
    nodes["arm"].gate = gate
    run = await engine.submit(
        wf([{"name": "a", "node": "arm", "action": "noop"}, {"name": "b", "node": "lh", "action": "noop"}])
    )
    await engine.wait_for(run.workflow_id, timeout_s=5, until=lambda w: w.status.running)
    paused = await engine.pause(run.workflow_id)
    assert paused.state.value == "paused"
    gate.set()
    # The step in flight finishes; the workflow stays paused at the next step.
    held = await engine.wait_for(
        run.workflow_id, timeout_s=5, until=lambda w: w.status.current_step_index == 1
    )
    assert held.status.paused and held.steps[0].status == ActionStatus.SUCCEEDED
    await engine.schedule_once()
    assert nodes["lh"].calls == []
    assert "Workflow is paused" in (await engine.get_workflow(run.workflow_id)).scheduler_metadata.reasons
    await engine.resume(run.workflow_id)
    assert (await engine.wait_for(run.workflow_id, timeout_s=5)).status.completed
    # Cancel while a step is in flight: its late result does not revive the workflow.
    gate2 = asyncio.Event()
    nodes["arm"].gate = gate2
    run2 = await engine.submit(
        wf([{"name": "a", "node": "arm", "action": "noop"}, {"name": "b", "node": "lh", "action": "noop"}])
    )
    await engine.wait_for(run2.workflow_id, timeout_s=5, until=lambda w: w.status.running)
    cancelled = await engine.cancel(run2.workflow_id)
    assert cancelled.status.cancelled and cancelled.steps[0].status == ActionStatus.CANCELLED
    gate2.set()
    await engine.wait_for(run2.workflow_id, timeout_s=5, until=lambda w: len(w.steps[0].history) == 1)
    final = await engine.get_workflow(run2.workflow_id)
    assert final.status.cancelled and not final.status.completed and final.status.current_step_index == 0
    assert len(nodes["lh"].calls) == 1


async def test_retry_while_the_cancelled_steps_action_still_runs_waits_for_it(
    engine: WorkcellEngine, nodes: dict[str, InProcessNode]
) -> None:
    # Given a run cancelled while its first step's action runs on the node
    gate = asyncio.Event()
    nodes["arm"].gate = gate
    run = await engine.submit(wf([{"name": "a", "node": "arm", "action": "noop"}]))
    await engine.wait_for(run.workflow_id, timeout_s=5, until=lambda w: w.status.running)
    await engine.cancel(run.workflow_id)
    # When it is retried before that action ends
    await engine.retry(run.workflow_id)
    await engine.schedule_once()
    assert len(nodes["arm"].calls) == 1  # the retried step waits: the node still runs the old action
    gate.set()
    # Then the old action's result is kept as late, the retried step runs after it, and the run completes
    done = await engine.wait_for(run.workflow_id, timeout_s=5)
    assert done.status.completed and len(nodes["arm"].calls) == 2
    assert nodes["arm"].calls[0].action_id != nodes["arm"].calls[1].action_id
    assert (await engine.jobs.get_job(run.workflow_id)).status == "finished"


async def test_resubmit_makes_a_new_run_with_the_same_inputs(
    engine: WorkcellEngine, nodes: dict[str, InProcessNode]
) -> None:
    definition = wf(
        [{"node": "lh", "action": "aspirate", "args": {"volume_ul": "$v"}}], parameters=[{"name": "v"}]
    )
    run = await engine.submit(definition, json_inputs={"v": 7})
    await engine.wait_for(run.workflow_id, timeout_s=5)
    again = await engine.resubmit(run.workflow_id)
    assert again.workflow_id != run.workflow_id
    done = await engine.wait_for(again.workflow_id, timeout_s=5)
    assert done.status.completed and [c.args["volume_ul"] for c in nodes["lh"].calls] == [7, 7]


async def test_conditions_hold_a_step_and_say_why(
    engine: WorkcellEngine, nodes: dict[str, InProcessNode]
) -> None:
    definition = wf(
        [
            {
                "name": "read",
                "node": "reader",
                "action": "read",
                "conditions": [
                    {"condition_type": "resource_present", "location_name": "reader_tray"},
                    {"condition_type": "expression", "expression": "tips.quantity >= 5"},
                ],
            }
        ]
    )
    run = await engine.submit(definition)
    await engine.schedule_once()
    waiting = await engine.get_workflow(run.workflow_id)
    assert waiting.state.value == "queued" and not waiting.scheduler_metadata.ready_to_run
    assert waiting.scheduler_metadata.reasons == ["Waiting for a resource in location reader_tray"]
    assert nodes["reader"].calls == []
    # A resource change wakes the scheduler; no interval is waited.
    await engine.create_resource(ResourceDefinition(resource_name="plate_9"), parent="reader_tray")
    done = await engine.wait_for(run.workflow_id, timeout_s=2)
    assert done.status.completed


def test_fifo_scheduler_claims_and_order(workcell: WorkcellDefinition) -> None:
    from podium.workcell.prepare import build_workflow
    from podium.workcell.workcell import NodeRecord

    nodes = {n: NodeRecord(node_url="x", status={"ready": True}) for n in ("arm", "lh", "reader")}
    nodes["reader"] = NodeRecord(node_url="x", status={"ready": False, "description": "warming up"})
    a = build_workflow(
        wf([{"node": "arm", "action": "noop"}]), parameter_values={}, nodes=nodes, locations={}
    )
    b = build_workflow(
        wf([{"node": "arm", "action": "noop"}]), parameter_values={}, nodes=nodes, locations={}
    )
    c = build_workflow(wf([{"node": "lh", "action": "noop"}]), parameter_values={}, nodes=nodes, locations={})
    d = build_workflow(
        wf([{"node": "reader", "action": "noop"}]), parameter_values={}, nodes=nodes, locations={}
    )
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i, w in enumerate((a, b, c, d)):
        w.submitted_time = t0 + timedelta(seconds=i)
    decisions = fifo_decisions([d, c, b, a], WorkcellSnapshot(nodes=nodes))
    assert decisions[a.workflow_id].ready_to_run and decisions[a.workflow_id].priority == 0
    assert not decisions[b.workflow_id].ready_to_run
    assert decisions[b.workflow_id].reasons == [f"Node arm is in use by workflow {a.workflow_id}"]
    assert decisions[c.workflow_id].ready_to_run
    assert decisions[d.workflow_id].reasons == ["Node reader not ready: warming up"]
    held = {Claim("node", "lh"): "someone"}
    decisions = fifo_decisions([c], WorkcellSnapshot(nodes=nodes, held=held))
    assert decisions[c.workflow_id].reasons == ["Node lh is in use by workflow someone"]


async def test_steps_on_different_nodes_run_concurrently(
    engine: WorkcellEngine, nodes: dict[str, InProcessNode]
) -> None:
    gate = asyncio.Event()
    nodes["arm"].gate = gate
    slow = await engine.submit(wf([{"node": "arm", "action": "noop"}]))
    blocked = await engine.submit(wf([{"node": "arm", "action": "noop"}]))
    free = await engine.submit(wf([{"node": "lh", "action": "noop"}]))
    assert (await engine.wait_for(free.workflow_id, timeout_s=5)).status.completed
    queued = await engine.get_workflow(blocked.workflow_id)
    assert queued.state.value == "queued"
    assert f"Node arm is in use by workflow {slow.workflow_id}" in queued.scheduler_metadata.reasons
    gate.set()
    assert (await engine.wait_for(blocked.workflow_id, timeout_s=5)).status.completed


async def test_custom_scheduler_by_module_path(workcell: WorkcellDefinition, tmp_path: Path) -> None:
    settings = WorkcellManagerSettings(scheduler="tests.workcell.lifo_scheduler")
    eng = WorkcellEngine(
        workcell, store=MemoryStore(), data_dir=tmp_path, settings=settings, connectors=make_nodes()
    )
    assert (
        type(eng.scheduler).__name__ == "Scheduler"
        and type(eng.scheduler).__module__ == "tests.workcell.lifo_scheduler"
    )
    async with eng:
        run = await eng.submit(wf([{"node": "arm", "action": "noop"}]))
        done = await eng.wait_for(run.workflow_id, timeout_s=5)
        assert done.status.completed and done.scheduler_metadata.priority == 42


# --- crash and restart ---------------------------------------------------------------------------


async def _engine(
    workcell: WorkcellDefinition, store: Store, tmp_path: Path, nodes: dict[str, InProcessNode]
) -> WorkcellEngine:
    settings = WorkcellManagerSettings(scheduler_update_interval=30.0, node_update_interval=30.0)
    return WorkcellEngine(workcell, store=store, data_dir=tmp_path, settings=settings, connectors=dict(nodes))


async def test_crash_mid_step_resumes_by_reconciling_with_the_node(
    workcell: WorkcellDefinition, tmp_path: Path
) -> None:
    # Given a workflow whose second step is in flight on the node when the workcell dies
    nodes = make_nodes()
    gate = asyncio.Event()
    nodes["lh"].gate = gate
    db = tmp_path / "wc.db"
    first = await _engine(workcell, SQLiteStore(db), tmp_path, nodes)
    await first.start()
    run = await first.submit(
        wf(
            [
                {"node": "arm", "action": "noop"},
                {"node": "lh", "action": "aspirate", "args": {"volume_ul": 5}},
                {"node": "reader", "action": "noop"},
            ]
        )
    )
    await first.wait_for(run.workflow_id, timeout_s=5, until=lambda w: w.status.current_step_index == 1)
    await asyncio.wait_for(nodes["lh"].acknowledged.wait(), 5)
    action_id = (await first.get_workflow(run.workflow_id)).steps[1].result.action_id  # type: ignore[union-attr]
    journal = await first.store.get(ACTION_KIND, action_id)
    assert journal is not None and journal.status == "acknowledged"
    await first.stop()
    await first.store.close()
    # When a new engine starts on the same file while the node still runs the action, then finishes it
    second = await _engine(workcell, SQLiteStore(db), tmp_path, nodes)
    await second.start()
    gate.set()
    done = await second.wait_for(run.workflow_id, timeout_s=5)
    # Then the node's result is used, the action was not sent again, and the workflow completes
    assert done.status.completed, done.steps[1].result.errors[0].message  # type: ignore[union-attr]
    assert [c.action_id for c in nodes["lh"].calls] == [action_id]
    assert len(nodes["arm"].calls) == 1
    assert (await second.store.get(ACTION_KIND, action_id)).status == "result"  # type: ignore[union-attr]
    await second.stop()
    await second.store.close()


async def test_crash_after_send_with_unknown_outcome_is_not_resent(
    workcell: WorkcellDefinition, tmp_path: Path
) -> None:
    nodes = make_nodes()
    nodes["arm"].gate = asyncio.Event()
    db = tmp_path / "wc.db"
    first = await _engine(workcell, SQLiteStore(db), tmp_path, nodes)
    await first.start()
    run = await first.submit(wf([{"node": "arm", "action": "noop"}]))
    await first.wait_for(run.workflow_id, timeout_s=5, until=lambda w: w.status.running)
    await asyncio.wait_for(nodes["arm"].acknowledged.wait(), 5)
    await first.stop()
    await first.store.close()
    # The node restarted too and lost every record of the action.
    fresh = make_nodes()
    second = await _engine(workcell, SQLiteStore(db), tmp_path, fresh)
    await second.start()
    done = await second.wait_for(run.workflow_id, timeout_s=5)
    assert done.status.failed
    assert "not sent again" in str(done.steps[0].result.errors[0].message)  # type: ignore[union-attr]
    assert fresh["arm"].calls == []
    # An operator retry runs it again, under a new action id.
    await second.retry(run.workflow_id)
    assert (await second.wait_for(run.workflow_id, timeout_s=5)).status.completed
    assert len(fresh["arm"].calls) == 1
    await second.stop()
    await second.store.close()


async def test_a_crash_before_the_node_acknowledged_runs_the_step_once_on_the_next_owner(
    workcell: WorkcellDefinition, tmp_path: Path
) -> None:
    # Given a workcell that dies (gives nothing back, its lock and its task leases lapse) while a step's
    # action is created on the node but not yet acknowledged
    store = MemoryStore()
    nodes = make_nodes()
    arm = nodes["arm"]
    real = arm.run_action
    entered = asyncio.Event()

    async def stuck(call: ActionCall, **kw: Any) -> Any:
        entered.set()
        await asyncio.Event().wait()

    settings = WorkcellManagerSettings(
        scheduler_update_interval=30.0, node_update_interval=30.0, owner_lock_ttl_s=0.4
    )
    first = WorkcellEngine(
        workcell, store=store, data_dir=tmp_path, settings=settings, connectors=dict(nodes)
    )
    await first.start()
    arm.run_action = stuck  # type: ignore[method-assign]
    run = await first.submit(wf([{"node": "arm", "action": "noop"}]))
    await asyncio.wait_for(entered.wait(), 5)
    never_sent = (await first.get_workflow(run.workflow_id)).steps[0].result.action_id  # type: ignore[union-attr]
    assert await store.get(ACTION_KIND, never_sent) is None  # not acknowledged: no journal yet
    (task,) = await first.jobs.list_tasks(run.workflow_id)  # the step's intent: its task, on record
    assert task.status == "running"

    async def nothing(*_: Any, **__: Any) -> bool:
        return False

    first.store.release_lock = nothing  # type: ignore[method-assign]
    first.jobs.release_task = nothing  # type: ignore[method-assign]
    await first.stop()
    arm.run_action = real  # type: ignore[method-assign]
    # When another process starts on the store: it owns it once the lock lapses, and the step's task comes
    # back to it once its lease lapses
    second = WorkcellEngine(
        workcell, store=store, data_dir=tmp_path, settings=settings, connectors=dict(nodes)
    )
    await second.start()
    try:
        done = await second.wait_for(run.workflow_id, timeout_s=10)
        # Then the step ran once, under a new action id, and the task's second attempt completed it
        assert done.status.completed
        assert len(arm.calls) == 1 and arm.calls[0].action_id != never_sent
        (task,) = await second.jobs.list_tasks(run.workflow_id)
        assert task.status == "completed"
    finally:
        await second.stop()


async def test_node_poll_on_the_clock_wakes_the_scheduler(
    workcell: WorkcellDefinition, tmp_path: Path
) -> None:
    clock = ManualClock()
    nodes = make_nodes()
    settings = WorkcellManagerSettings(scheduler_update_interval=5.0, node_update_interval=2.0)
    store = MemoryStore(clock=clock)
    async with WorkcellEngine(
        workcell, store=store, data_dir=tmp_path, settings=settings, clock=clock, connectors=nodes
    ) as eng:
        nodes["reader"].ready = False
        await eng.poll_nodes()
        run = await eng.submit(wf([{"node": "reader", "action": "noop"}]))
        waiting = await asyncio.wait_for(
            eng.wait_for(run.workflow_id, until=lambda w: bool(w.scheduler_metadata.reasons)), 5
        )
        assert waiting.scheduler_metadata.reasons == ["Node reader not ready: not ready"]
        nodes["reader"].ready = True
        # No real time passes: the node poll runs when the virtual clock reaches it, and its news
        # (the reader is ready) wakes the scheduler at once, not at the next scheduler interval.
        await clock.advance(2.0)
        done = await asyncio.wait_for(eng.wait_for(run.workflow_id), 5)
        assert done.status.completed
        assert clock.now() - 1_700_000_000.0 == 2.0
