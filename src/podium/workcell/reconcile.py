"""Step-task arrival and recovery: adopting a run's step task, and reconciling a step sent before a restart.

Owns the workcell's executor (:class:`StepExecutor`, its in-process worker in the engine's registry) and what
happens when it is handed a step's task (hold it for the scheduler, or adopt the run
and look for the step's journal), when the engine withdraws one, and the reconciliation of a step the journal
says was sent (ask the node, never re-send blindly). It must not schedule or dispatch steps itself: starting,
running and finishing a step are the step runner's, passed in as callables.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from podium.clock import Clock
from podium.engine.models import EngineEvent, Task
from podium.engine.workers import InProcessWorker
from podium.log import bind_ids
from podium.store import Op, Store
from podium.store.base import Lease, Record
from podium.workcell._base import utcnow
from podium.workcell.actions import ActionResult, ActionStatus, Error
from podium.workcell.errors import WorkflowValidationError
from podium.workcell.journal import WORKFLOW_KIND
from podium.workcell.locations import Location
from podium.workcell.nodes import ActionOutcome, NodeConnector
from podium.workcell.prepare import resolve_step_for_run
from podium.workcell.scheduler import Claim, step_claims
from podium.workcell.workcell import NodeRecord
from podium.workcell.workflows import Step, Workflow

__all__ = ["ACTION_KIND", "STEP_TASK", "Flight", "Reconciler", "StepExecutor"]

log = logging.getLogger("podium.workcell")

ACTION_KIND = "workcell.action"
"""The kind of a step's journal record (intent, sent, acknowledged, result)."""
STEP_TASK = "workcell.step"
"""The task type of a workflow step (one queue per store: a store has one workcell owner)."""


class Flight:
    """One step in flight: its engine task, the claims it holds and its journal record's version.

    ``unflushed``: the previous step's end was written without waiting for the disk (see
    ``StepRunner.finish_step``); this step's first journal write, durable and before anything is started,
    brings it to disk. If the step ends otherwise, this write (that end's journal again) is made durable first.
    """

    __slots__ = (
        "action_id",
        "claims",
        "index",
        "journal_version",
        "node_action_id",
        "runner",
        "task",
        "unflushed",
        "workflow_id",
    )

    def __init__(self, task: Task, index: int, action_id: str, claims: list[Claim]) -> None:
        self.task = task
        self.workflow_id = task.job_id
        self.index = index
        self.action_id = action_id
        self.claims = claims
        self.journal_version = 0
        self.node_action_id = action_id
        self.runner: asyncio.Task[None] | None = None
        self.unflushed: Op | None = None


class Reconciler:
    """Takes in the step tasks the executor is handed and reconciles steps sent before a restart."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        lock: asyncio.Lock,
        workflows: dict[str, Workflow],
        versions: dict[str, int],
        flights: dict[str, Flight],
        tasks_held: dict[str, Task],
        held: dict[Claim, str],
        nodes: dict[str, NodeRecord],
        locations: dict[str, Location],
        connectors: dict[str, NodeConnector],
        instance_id: str,
        owner_token: Callable[[], int | None],
        spawn: Callable[[Any, str], None],
        wake: Callable[[], None],
        finish_step: Callable[[Flight, ActionOutcome], Awaitable[None]],
        builtin: Callable[..., Awaitable[ActionOutcome]],
        execute: Callable[..., Awaitable[None]],
        with_timeout: Callable[[Any], Awaitable[ActionOutcome]],
    ) -> None:
        self.store = store
        self.clock = clock
        self.lock = lock
        self.workflows = workflows
        self.versions = versions
        self.flights = flights
        self.tasks_held = tasks_held
        self.held = held
        self.nodes = nodes
        self.locations = locations
        self.connectors = connectors
        self.instance_id = instance_id
        self._owner_token = owner_token
        self._spawn = spawn
        self._wake = wake
        self._finish_step = finish_step
        self._builtin = builtin
        self._execute = execute
        self._with_timeout = with_timeout

    def hold_run(self, rec: Record) -> None:
        """Keep a stored run live in this process (nothing of it runs until its task reaches the executor)."""
        wf = Workflow.model_validate(rec.data)
        wf.status.running = False
        self.workflows[wf.workflow_id] = wf
        self.versions[wf.workflow_id] = rec.version

    def on_task(self, task: Task, *, fresh: bool) -> None:
        """The executor was handed a step's task: just dispatched (``fresh``), or taken from the queue (back
        after a stop, a crash or a take-over, or submitted through another process)."""
        if fresh and task.job_id in self.workflows:
            self.accept(task)
        else:
            self._spawn(self.adopt(task), f"adopt-{task.job_id}")

    async def adopt(self, task: Task) -> None:
        """Read the run if this process does not hold it, and look for the step's journal: a step that was
        sent before is reconciled with its node, any other runs as usual."""
        async with self.lock:
            if task.job_id not in self.workflows:
                rec = await self.store.get(WORKFLOW_KIND, task.job_id)
                if rec is None:
                    log.error("step task %s names no workflow run %s", task.task_id, task.job_id)
                    return
                self.hold_run(rec)
            unfinished = [
                r
                for r in await self.store.list(
                    ACTION_KIND, group=task.job_id, status=["sent", "acknowledged"], limit=1000
                )
                if r.data.get("task_id") == task.task_id
            ]
        if unfinished and task.job_id not in self.flights:
            await self.recover_step(task, unfinished[-1])
        else:
            self.accept(task)

    def accept(self, task: Task) -> None:
        """Hold a step's task for the scheduler to start, if it matches its run's current step."""
        wf = self.workflows.get(task.job_id)
        if wf is None:  # stood down meanwhile: the next owner gets the task
            return
        index = int(task.params.get("index", -1))
        if wf.status.terminal or index != wf.status.current_step_index or index >= len(wf.steps):
            log.warning(
                "step task %s (step %s) does not match workflow %s (%s, step %s); not run",
                task.task_id,
                index,
                wf.workflow_id,
                wf.state.value,
                wf.status.current_step_index,
            )
            return
        self.tasks_held[wf.workflow_id] = task
        flight = self.flights.get(wf.workflow_id)
        if flight is not None:
            if flight.task.task_id == task.task_id:
                flight.task = task  # the same step, back under a new delivery while it runs here
            # else: a retried run's new task while the old attempt's action still runs (its late result is
            # kept in the journal): it starts once that flight has ended and freed the node.
            return
        self._wake()

    def on_task_withdrawn(self, task_id: str) -> None:
        """The engine cancelled (or timed out) a task: a step not started yet is dropped; one in flight
        runs to its end and its result is recorded as late."""
        for wf_id, task in list(self.tasks_held.items()):
            if task.task_id == task_id and wf_id not in self.flights:
                del self.tasks_held[wf_id]

    async def recover_step(self, task: Task, rec: Record) -> None:
        """A step whose journal says it was sent (acknowledged by its node, or a built-in that began) before a
        restart or a take-over: ask the node what became of it (see the module docstring), never re-send it
        blindly."""
        data = rec.data
        async with self.lock:
            wf = self.workflows.get(task.job_id)
            index = int(data.get("step_index", -1))
            if (
                wf is None
                or wf.workflow_id in self.flights
                or wf.status.terminal
                or index != wf.status.current_step_index
            ):
                return
            phases = data.get("phases") or {}
            started = datetime.fromisoformat(phases["intent"]) if phases.get("intent") else utcnow(self.clock)
            try:  # the step as it was sent (its parameters resolved), for a built-in to finish
                base = resolve_step_for_run(wf, wf.steps[index], nodes=self.nodes, locations=self.locations)
            except WorkflowValidationError:
                base = wf.steps[index]
            step = base.model_copy(
                update={
                    "step_id": wf.steps[index].step_id,
                    "history": wf.steps[index].history,
                    "status": ActionStatus.RUNNING,
                    "start_time": started,
                    "result": ActionResult(
                        action_id=rec.id, status=ActionStatus.RUNNING, history_created_at=started
                    ),
                }
            )
            wf.steps[index] = step
            claims = step_claims(step, self.locations)
            flight = Flight(task, index, rec.id, claims)
            flight.journal_version = rec.version
            flight.node_action_id = str(data.get("node_action_id") or rec.id)
            for c in claims:
                self.held[c] = wf.workflow_id
            self.flights[wf.workflow_id] = flight
            self.tasks_held[wf.workflow_id] = task
            wf.status.running = not wf.status.paused
            wf.status.has_started = True
        with bind_ids(workflow_id=wf.workflow_id, step_id=step.step_id):
            log.info(
                "recovered step %s: phase %s, reconciling action %s with the node",
                step.label,
                rec.status,
                rec.id,
            )
            flight.runner = asyncio.current_task()
            await self.reconcile(flight, step, str(rec.status), phases.get("sent"), journal=dict(data))

    async def reconcile(
        self,
        flight: Flight,
        step: Step,
        phase: str,
        sent_at: str | None = None,
        *,
        journal: dict[str, Any],
    ) -> None:
        """Ask a sent step's node what became of its action and finish the step on that (or start it, if the
        node acknowledged it and never started it)."""
        conn = self.connectors.get(str(step.node))
        outcome: ActionOutcome
        resend = False
        if not step.node:  # a built-in action: no instrument, so run what is left of it
            elapsed = (
                (utcnow(self.clock) - datetime.fromisoformat(sent_at)).total_seconds() if sent_at else 0.0
            )
            await self._finish_step(flight, await self._builtin(flight, step, elapsed_s=elapsed))
            return
        try:
            if conn is None:
                raise WorkflowValidationError(
                    f"node {step.node} is no longer in the workcell", step=step.label
                )
            outcome = await conn.get_action_outcome(flight.node_action_id, str(step.action))
            if outcome.status == ActionStatus.NOT_STARTED:
                # Acknowledged, never started (the crash came between the journal's write and the start):
                # nothing ran; start that very action, by the id the node gave it (not created again, so a
                # late start from the dead owner would be refused as a duplicate).
                resend = True
            elif outcome.status in (ActionStatus.RUNNING, ActionStatus.PAUSED):
                outcome = await self._with_timeout(conn.await_action(flight.node_action_id, str(step.action)))
            elif outcome.status == ActionStatus.UNKNOWN:
                outcome = ActionOutcome(
                    flight.action_id,
                    ActionStatus.FAILED,
                    [
                        Error(
                            message=(
                                f"action {flight.action_id} was {phase} before a restart and node {step.node} "
                                "has no record of it; it was not sent again (retry the workflow to run it)"
                            ),
                            error_type="UnknownOutcome",
                            logged_at=utcnow(self.clock),
                        )
                    ],
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            outcome = ActionOutcome(
                flight.action_id,
                ActionStatus.FAILED,
                [
                    Error(
                        message=f"could not reconcile action {flight.action_id} with node {step.node}: {exc}",
                        error_type="UnknownOutcome",
                        logged_at=utcnow(self.clock),
                    )
                ],
            )
        if resend:
            journal.update(owner=self.instance_id, owner_token=self._owner_token())
            await self._execute(flight, step, journal, created=True)
            return
        await self._finish_step(flight, outcome)


class StepExecutor(InProcessWorker):
    """The workcell's executor in the engine's registry: step tasks are handed to the workcell, which holds
    them until the scheduler starts them (it has no slots to run out of: the nodes are the limit)."""

    def __init__(self, reconciler: Reconciler, worker_id: str, lease_s: float, poll_wait_s: float) -> None:
        super().__init__(worker_id, capacity=1_000_000, poll_wait_s=poll_wait_s, lease_s=lease_s)
        self.add_skill(STEP_TASK, _held_by_the_workcell)
        self._reconciler = reconciler

    def deliver(self, task: Task, lease: Lease | None = None) -> None:
        # With a lease: dispatched by a write of this process just now. Without: taken from the queue (a
        # step given back or whose lease lapsed, or one submitted through another process).
        self._reconciler.on_task(task, fresh=lease is not None)

    def _on_event(self, event: EngineEvent) -> None:
        if event.task_id is not None:
            self._reconciler.on_task_withdrawn(event.task_id)


def _held_by_the_workcell() -> None:  # pragma: no cover - StepExecutor.deliver never runs skills
    raise AssertionError("workcell step tasks are run by the workcell's scheduler")
