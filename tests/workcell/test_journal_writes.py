"""Durable writes per step and the physical-step journal: a step's end, the job's move and the next step's
task (its intent) share one transaction, "sent" + "acknowledged" one more, and every phase is on disk before
it is acted on. One fsync per step: a step's end followed by the next step is written without waiting for
the disk, and the next step's "acknowledged" (durable, before the node starts anything) brings it there."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from podium.engine.engine import JOB, TASK
from podium.store import Append, MemoryStore, Op, Put, Store
from podium.workcell import (
    ActionCall,
    ActionStatus,
    InProcessNode,
    WorkcellDefinition,
    WorkcellEngine,
    WorkcellManagerSettings,
    load_workflow_definition,
)
from podium.workcell.engine import ACTION_KIND, WORKFLOW_KIND

from .conftest import make_nodes


class CountingStore(MemoryStore):
    """A memory store that records every apply: its operations and whether it asked for durability."""

    def __init__(self) -> None:
        super().__init__()
        self.applies: list[tuple[tuple[Op, ...], bool]] = []
        self.durable_write = asyncio.Event()
        """Set (and replaced) after every durable write."""

    async def apply(self, *ops: Op, durable: bool = True) -> list[Any]:
        self.applies.append((ops, durable))
        result = await super().apply(*ops, durable=durable)
        if durable:
            event, self.durable_write = self.durable_write, asyncio.Event()
            event.set()
        return result

    def all_on_disk(self) -> bool:
        """Whether every write so far would be on disk: a disk store flushes its log in order, so a durable
        write brings every earlier one with it."""
        return not self.applies or self.applies[-1][1]


def _engine(
    workcell: WorkcellDefinition, store: Store, tmp_path: Path, nodes: dict[str, Any]
) -> WorkcellEngine:
    settings = WorkcellManagerSettings(scheduler_update_interval=30.0, node_update_interval=30.0)
    return WorkcellEngine(workcell, store=store, data_dir=tmp_path, settings=settings, connectors=dict(nodes))


def _one_step() -> Any:
    return load_workflow_definition({"name": "one", "steps": [{"node": "arm", "action": "noop"}]})


def _ten_steps() -> Any:
    return load_workflow_definition(
        {"name": "ten", "steps": [{"name": f"s{i}", "node": "arm", "action": "noop"} for i in range(10)]}
    )


async def test_one_durable_write_per_step_and_every_phase_journaled(
    workcell: WorkcellDefinition, tmp_path: Path
) -> None:
    store = CountingStore()
    async with _engine(workcell, store, tmp_path, make_nodes()) as engine:
        store.applies.clear()
        run = await engine.submit(_ten_steps())
        done = await engine.wait_for(run.workflow_id, timeout_s=10)
        assert done.status.completed
        writes = list(store.applies)
        # The definition; the submission (the run's job, its first step's task, the workflow view); per
        # step: sent/acknowledged, then its outcome with the job's move and the next step's task.
        assert len(writes) == 1 + 1 + 2 * 10, [[type(op).__name__ for op in ops] for ops, _ in writes]
        submission = writes[1][0]
        assert {(o.kind, o.status) for o in submission if isinstance(o, Put)} == {
            (WORKFLOW_KIND, "queued"),
            (JOB, "waiting_for_worker"),
            (TASK, "running"),  # dispatched and handed to the workcell's executor in the same write
        }
        # Durable: the definition, the submission, each step's "acknowledged" and the last step's end; the
        # other nine ends are each brought to disk by the next write, the next step's "acknowledged".
        durable = [d for _, d in writes]
        assert durable == [True, True] + [True, False] * 9 + [True, True], durable
        for i, (ops, d) in enumerate(writes[2:], start=2):
            phases = {o.status for o in ops if isinstance(o, Put) and o.kind == ACTION_KIND}
            assert phases == ({"acknowledged"} if i % 2 == 0 else {"result"}), (i, phases)
            if not d:
                assert writes[i + 1][1] and {
                    o.status for o in writes[i + 1][0] if isinstance(o, Put) and o.kind == ACTION_KIND
                } == {"acknowledged"}
        # Each step's end shares its transaction with the job's move and the next step's task.
        for i in range(9):
            ended = done.steps[i].result.action_id  # type: ignore[union-attr]
            together = [
                ops
                for ops, _ in writes
                if (ACTION_KIND, ended, "result")
                in {(o.kind, o.id, o.status) for o in ops if isinstance(o, Put) and o.kind == ACTION_KIND}
            ]
            assert len(together) == 1
            puts = [(o.kind, o.status) for o in together[0] if isinstance(o, Put)]
            assert puts.count((WORKFLOW_KIND, "queued")) == 1  # between steps
            assert (JOB, "waiting_for_worker") in puts  # at the next step's state
            assert (TASK, "completed") in puts and (TASK, "running") in puts
        for step in done.steps:
            journal = await store.get(ACTION_KIND, step.result.action_id)  # type: ignore[union-attr]
            assert journal is not None and journal.status == "result"
            assert set(journal.data["phases"]) == {"intent", "sent", "acknowledged", "result"}
            assert journal.data["node_action_id"] == step.result.action_id  # type: ignore[union-attr]
            assert journal.data["task_id"]  # the step's intent: the engine task dispatched before it ran


async def test_acknowledged_is_on_disk_before_the_node_starts(
    workcell: WorkcellDefinition, tmp_path: Path
) -> None:
    store = CountingStore()
    nodes = make_nodes()
    seen: list[str | None] = []

    class Watching(InProcessNode):
        async def _execute(self, call: ActionCall) -> Any:
            rec = await store.get(ACTION_KIND, call.action_id)
            seen.append(rec.status if rec is not None else None)
            return await super()._execute(call)

    arm = Watching("arm", {"noop": lambda: None})
    async with _engine(workcell, store, tmp_path, {**nodes, "arm": arm}) as engine:
        run = await engine.submit(_ten_steps())
        assert (await engine.wait_for(run.workflow_id, timeout_s=10)).status.completed
    assert seen == ["acknowledged"] * 10


async def test_nothing_starts_on_a_node_before_every_earlier_write_is_on_disk(
    workcell: WorkcellDefinition, tmp_path: Path
) -> None:
    # Given a 10-step workflow whose step ends (but the last) are written without waiting for the disk
    store = CountingStore()
    on_disk: list[bool] = []

    class Watching(InProcessNode):
        async def _execute(self, call: ActionCall) -> Any:
            on_disk.append(store.all_on_disk())
            return await super()._execute(call)

    arm = Watching("arm", {"noop": lambda: None})
    async with _engine(workcell, store, tmp_path, {**make_nodes(), "arm": arm}) as engine:
        run = await engine.submit(_ten_steps())
        assert (await engine.wait_for(run.workflow_id, timeout_s=10)).status.completed
    # Then when each action starts on the node, the previous step's end is on disk (a durable write came
    # after it: the step's own "acknowledged")
    assert any(not d for _, d in store.applies)
    assert on_disk == [True] * 10


async def test_a_step_end_whose_next_step_must_wait_is_brought_to_disk_at_once(
    workcell: WorkcellDefinition, tmp_path: Path
) -> None:
    # Given workflow B running a step on lh, held there, and workflow A whose second step needs lh
    store = CountingStore()
    nodes = make_nodes()
    lh = nodes["lh"]
    lh.gate = asyncio.Event()
    async with _engine(workcell, store, tmp_path, nodes) as engine:
        b = await engine.submit(
            load_workflow_definition({"name": "b", "steps": [{"node": "lh", "action": "noop"}]})
        )
        await asyncio.wait_for(lh.acknowledged.wait(), 5)
        a = await engine.submit(
            load_workflow_definition(
                {"name": "a", "steps": [{"node": "arm", "action": "noop"}, {"node": "lh", "action": "noop"}]}
            )
        )

        # When A's first step ends (written without waiting for the disk: a next step follows) and its
        # second step cannot start (lh is busy)
        async def first_ended() -> None:
            while True:
                wf = await engine.get_workflow(a.workflow_id)
                if wf.steps[0].status == ActionStatus.SUCCEEDED:
                    return
                await engine.journal.changed.wait()

        await asyncio.wait_for(first_ended(), 5)
        ended = (await engine.get_workflow(a.workflow_id)).steps[0].result.action_id  # type: ignore[union-attr]
        end_write = next(
            i
            for i, (ops, _) in enumerate(store.applies)
            if any(isinstance(o, Put) and o.kind == ACTION_KIND and o.id == ended for o in ops)
            and any(isinstance(o, Put) and o.kind == ACTION_KIND and o.status == "result" for o in ops)
        )
        assert not store.applies[end_write][1]

        # Then a durable write follows at once (that end's journal again), without waiting for lh
        async def on_disk() -> None:
            while not store.all_on_disk():
                await store.durable_write.wait()

        await asyncio.wait_for(on_disk(), 5)
        flushed = [ops for ops, d in store.applies[end_write + 1 :] if d]
        assert any(
            isinstance(o, Put) and o.kind == ACTION_KIND and o.id == ended and o.status == "result"
            for ops in flushed
            for o in ops
        )
        assert (await engine.get_workflow(a.workflow_id)).steps[1].status != ActionStatus.RUNNING
        lh.gate.set()
        assert (await engine.wait_for(b.workflow_id, timeout_s=10)).status.completed
        assert (await engine.wait_for(a.workflow_id, timeout_s=10)).status.completed


async def test_crash_after_a_step_ends_queues_the_next_step_again(
    workcell: WorkcellDefinition, tmp_path: Path
) -> None:
    # Given a workflow whose first step ended, and whose second step's intent was written with that end,
    # when the workcell dies before the second step reached the node (the node never acknowledged it)
    store = MemoryStore()
    nodes = make_nodes()
    hold = asyncio.Event()
    entered = asyncio.Event()
    lh = nodes["lh"]
    real = lh.run_action

    async def stuck(call: ActionCall, **kw: Any) -> Any:
        entered.set()
        await hold.wait()
        return await real(call, **kw)

    lh.run_action = stuck  # type: ignore[method-assign]
    definition = load_workflow_definition(
        {"name": "two", "steps": [{"node": "arm", "action": "noop"}, {"node": "lh", "action": "noop"}]}
    )
    first = _engine(workcell, store, tmp_path, nodes)
    await first.start()
    run = await first.submit(definition)
    await asyncio.wait_for(entered.wait(), 5)
    never_acked = (await first.get_workflow(run.workflow_id)).steps[1].result.action_id  # type: ignore[union-attr]
    assert await store.get(ACTION_KIND, never_acked) is None
    await first.stop()
    # Then a new process queues it again under a new id; the first step is not run twice
    lh.run_action = real  # type: ignore[method-assign]
    second = _engine(workcell, store, tmp_path, nodes)
    await second.start()
    done = await second.wait_for(run.workflow_id, timeout_s=5)
    await second.stop()
    assert done.status.completed
    assert len(nodes["arm"].calls) == 1
    assert [c.action_id for c in lh.calls] != [never_acked] and len(lh.calls) == 1


class HoldingStore(MemoryStore):
    """A memory store that holds the write of a workflow view in state ``status`` until ``release`` is set."""

    def __init__(self, status: str) -> None:
        super().__init__()
        self.status = status
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def apply(self, *ops: Op, durable: bool = True) -> list[Any]:
        if any(isinstance(o, Put) and o.kind == WORKFLOW_KIND and o.status == self.status for o in ops):
            self.held.set()
            await self.release.wait()
        return await super().apply(*ops, durable=durable)


async def test_wait_for_answers_only_once_the_change_it_sees_is_written(
    workcell: WorkcellDefinition, tmp_path: Path
) -> None:
    # Given a run whose last step ended, its "completed" write still under way
    store = HoldingStore("completed")
    async with _engine(workcell, store, tmp_path, make_nodes()) as engine:
        run = await engine.submit(_one_step())
        waiter = asyncio.create_task(engine.wait_for(run.workflow_id, timeout_s=10))
        await asyncio.wait_for(store.held.wait(), 5)
        # When something else wakes the waiters meanwhile
        engine.journal.notify()
        for _ in range(20):
            await asyncio.sleep(0)
        # Then wait_for does not answer from the live view (completed in memory, not yet in the store)
        assert not waiter.done()
        store.release.set()
        done = await waiter
        assert done.status.completed
        assert (await engine.jobs.get_job(run.workflow_id)).status == "finished"


class TaskAfterLateResultStore(MemoryStore):
    """A memory store where, once ``armed``, a write that puts a task record waits until a ``late_result`` has
    been written: a retried step's new task reaching the executor after the old action's end."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.late = asyncio.Event()

    async def apply(self, *ops: Op, durable: bool = True) -> list[Any]:
        if self.armed and any(isinstance(o, Put) and o.kind == TASK for o in ops):
            await self.late.wait()
        result = await super().apply(*ops, durable=durable)
        if any(isinstance(o, Append) and o.event == "late_result" for o in ops):
            self.late.set()
        return result


async def test_a_retried_step_runs_on_its_new_task_even_when_the_old_action_ends_first(
    workcell: WorkcellDefinition, tmp_path: Path
) -> None:
    # Given a run cancelled while its step's action runs, then retried
    store = TaskAfterLateResultStore()
    nodes = make_nodes()
    gate = asyncio.Event()
    nodes["arm"].gate = gate
    async with _engine(workcell, store, tmp_path, nodes) as engine:
        run = await engine.submit(_one_step())
        await engine.wait_for(run.workflow_id, timeout_s=5, until=lambda w: w.status.running)
        await engine.cancel(run.workflow_id)
        store.armed = True
        retry = asyncio.create_task(engine.retry(run.workflow_id))
        # When the old action ends before the retry's new task reaches the executor
        gate.set()
        await retry
        done = await engine.wait_for(run.workflow_id, timeout_s=5)
        # Then the step ran again on the new task, and the job moved to its end with it
        assert done.status.completed and len(nodes["arm"].calls) == 2
        assert (await engine.jobs.get_job(run.workflow_id)).status == "finished"
