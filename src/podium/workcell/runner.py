"""The step runner: starting a step, sending its action, and recording its outcome with the job's move.

Owns a step's flight from the scheduler's start to its end: resolving and launching it, its journal phases
(intent, sent, acknowledged), the node call and what to do when it fails mid-way, built-in actions, and the
one transaction that records the outcome and moves the run's job. It must not pick which step starts (the
scheduler's, in the engine) nor watch nodes or adopt tasks (the monitor's and the reconciler's).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from podium.clock import Clock
from podium.engine.engine import OrchestratorEngine
from podium.engine.models import Task
from podium.ids import new_ulid_str, traceparent_of
from podium.log import bind_ids
from podium.nodes.client import request_headers
from podium.store import Append, Op, Put, Store
from podium.workcell._base import utcnow
from podium.workcell.actions import ActionResult, ActionStatus, Error
from podium.workcell.datapoints import DatapointRepository
from podium.workcell.errors import WorkflowValidationError
from podium.workcell.journal import RunJournal
from podium.workcell.locations import Location, LocationArgument
from podium.workcell.monitor import NodeMonitor
from podium.workcell.nodes import ActionCall, ActionOutcome, NodeConnector
from podium.workcell.prepare import resolve_step_for_run
from podium.workcell.reconcile import ACTION_KIND, Flight
from podium.workcell.scheduler import Claim
from podium.workcell.settings import WorkcellManagerSettings
from podium.workcell.workcell import NodeRecord
from podium.workcell.workflows import Step, Workflow, WorkflowState

__all__ = ["StepRunner"]

log = logging.getLogger("podium.workcell")


class StepRunner:
    """Starts steps, runs their actions and records their outcomes (with the job's move, in one write)."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        settings: WorkcellManagerSettings,
        lock: asyncio.Lock,
        jobs: OrchestratorEngine,
        journal: RunJournal,
        monitor: NodeMonitor,
        datapoints: DatapointRepository,
        workflows: dict[str, Workflow],
        flights: dict[str, Flight],
        held: dict[Claim, str],
        tasks_held: dict[str, Task],
        not_before: dict[str, float],
        nodes: dict[str, NodeRecord],
        locations: dict[str, Location],
        connectors: dict[str, NodeConnector],
        instance_id: str,
        worker_id: str,
        owner_token: Callable[[], int | None],
        is_owner: Callable[[], bool],
        stopping: Callable[[], bool],
        schedule_locked: Callable[[], int],
        wake: Callable[[], None],
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.lock = lock
        self.jobs = jobs
        self.journal = journal
        self.monitor = monitor
        self.datapoints = datapoints
        self.workflows = workflows
        self.flights = flights
        self.held = held
        self.tasks_held = tasks_held
        self.not_before = not_before
        self.nodes = nodes
        self.locations = locations
        self.connectors = connectors
        self.instance_id = instance_id
        self.worker_id = worker_id
        """The executor's worker id: step tasks' results are submitted under it."""
        self._owner_token = owner_token
        self._is_owner = is_owner
        self._stopping = stopping
        self._schedule_locked = schedule_locked
        self._wake = wake

    def start_step(self, wf: Workflow, claims: list[Claim], task: Task) -> None:
        """Take the claims and launch the step (its parameters resolved now, from the run's values)."""
        index = wf.status.current_step_index
        step = wf.steps[index]
        now = utcnow(self.clock)
        action_id = new_ulid_str()
        flight = Flight(task, index, action_id, claims)
        for c in claims:
            self.held[c] = wf.workflow_id
        self.flights[wf.workflow_id] = flight
        try:
            resolved = resolve_step_for_run(wf, step, nodes=self.nodes, locations=self.locations)
        except WorkflowValidationError as exc:
            step.start_time = now
            step.result = ActionResult(
                action_id=action_id, status=ActionStatus.RUNNING, history_created_at=now
            )
            outcome = ActionOutcome(action_id, ActionStatus.FAILED, [Error.from_exception(exc, at=now)])
            flight.runner = asyncio.create_task(self.finish_step(flight, outcome), name=f"step-{action_id}")
            return
        resolved = resolved.model_copy(
            update={
                "step_id": step.step_id,
                "history": step.history,
                "status": ActionStatus.RUNNING,
                "start_time": now,
                "end_time": None,
                "duration": None,
                "last_status_update": now,
                "result": ActionResult(
                    action_id=action_id, status=ActionStatus.RUNNING, history_created_at=now
                ),
            }
        )
        wf.steps[index] = resolved
        wf.status.running = True
        wf.status.has_started = True
        if wf.start_time is None:
            wf.start_time = now
        journal = {
            "action_id": action_id,
            "workflow_id": wf.workflow_id,
            "task_id": task.task_id,
            "attempt": task.attempt,
            "step_index": index,
            "step_id": resolved.step_id,
            "node": resolved.node,
            "action": resolved.action,
            "phases": {"intent": now.isoformat()},
            "owner": self.instance_id,
            "owner_token": self._owner_token(),
        }
        flight.runner = asyncio.create_task(self.execute(flight, resolved, journal), name=f"step-{action_id}")

    async def write_phase(self, flight: Flight, journal: dict[str, Any], phase: str) -> None:
        """Write the step's journal in ``phase`` (with a "step_started" history line the first time): before
        the action starts. The workflow view is not rewritten for it (the step's end writes it): recovery
        finds an interrupted step by its task's journal."""
        journal["phases"].setdefault("sent", utcnow(self.clock).isoformat())
        journal["phases"][phase] = utcnow(self.clock).isoformat()
        ops: list[Op] = [
            Put(
                ACTION_KIND,
                flight.action_id,
                journal,
                expected_version=flight.journal_version,
                status=phase,
                group=flight.workflow_id,
            )
        ]
        if not flight.journal_version:
            info = {"step_index": flight.index, "action_id": flight.action_id, "task_id": flight.task.task_id}
            ops.append(Append(flight.workflow_id, "step_started", WorkflowState.RUNNING.value, info))
        await self.store.apply(*ops)  # durable: it also brings the previous step's end to disk
        flight.journal_version += 1
        flight.unflushed = None

    async def execute(
        self, flight: Flight, step: Step, journal: dict[str, Any], *, created: bool = False
    ) -> None:
        """Send the step's action and finish the step with its outcome. ``created``: the node holds the action
        created already (acknowledged before a restart), so it is only started, by the node's id for it."""
        with bind_ids(workflow_id=flight.workflow_id, step_id=step.step_id, node=step.node):
            if not step.node:
                journal["request"] = {"args": dict(step.args), "builtin": True}
                await self.write_phase(flight, journal, "sent")
                await self.finish_step(flight, await self.builtin(flight, step), journal=journal)
                return
            conn = self.connectors[str(step.node)]
            wf = self.workflows[flight.workflow_id]
            try:
                files = await self.step_files(wf, step)
            except Exception as exc:
                await self.finish_step(
                    flight, ActionOutcome(flight.action_id, ActionStatus.FAILED, [Error.from_exception(exc)])
                )
                return
            args = dict(step.args)
            for name, loc in step.locations.items():
                args[name] = loc.model_dump(mode="json") if isinstance(loc, LocationArgument) else loc
            call = ActionCall(
                flight.action_id,
                str(step.action),
                args,
                files,
                created_as=flight.node_action_id if created else None,
            )
            journal["request"] = {"args": args, "files": {k: str(v) for k, v in files.items()}}

            async def acknowledged(node_action_id: str) -> None:
                # The node has created the action and does nothing with it until it is started (the
                # connector contract): "sent" and "acknowledged" (with the node's id for the action, by
                # which recovery asks about it) reach the disk together, in one write, before the start.
                # A crash before this write leaves "intent": at most an action created and never started
                # on the node, so queuing the step again cannot run it twice.
                journal["node_action_id"] = node_action_id
                flight.node_action_id = node_action_id
                journal["phases"].setdefault("sent", utcnow(self.clock).isoformat())
                await self.write_phase(flight, journal, "acknowledged")

            # The step's span, named from its run and index (podium.ops.tracing), parents the node's work.
            trace = {
                "traceparent": traceparent_of(flight.workflow_id, f"step:{flight.workflow_id}:{flight.index}")
            }
            try:
                with request_headers(trace):
                    outcome = await self.with_timeout(conn.run_action(call, on_acknowledged=acknowledged))
            except asyncio.CancelledError:
                if flight.unflushed is not None:
                    await asyncio.shield(self.flush(flight))
                raise
            except Exception as exc:
                await self.flush(flight)  # before any wait: the previous step's end goes to disk now
                outcome = await self.after_transport_error(conn, flight, step, exc)
            await self.finish_step(flight, outcome, journal=journal)

    async def flush(self, flight: Flight) -> None:
        """Bring the previous step's end to disk (it was written without waiting for the disk) when this step
        has made no durable write yet: that end's journal record is written again, durably."""
        op, flight.unflushed = flight.unflushed, None
        if op is not None:
            await self.store.apply(op)

    async def builtin(self, flight: Flight, step: Step, *, elapsed_s: float = 0.0) -> ActionOutcome:
        """Run one of MADSci's node-less workcell actions (``wait``), on the engine's clock. After a
        restart, ``elapsed_s`` is how long it had already run."""
        try:
            if step.action == "wait":
                seconds = float(step.args["seconds"])
                await self.clock.sleep(max(0.0, seconds - elapsed_s))
                return ActionOutcome(flight.action_id, ActionStatus.SUCCEEDED)
            raise WorkflowValidationError(
                f"'{step.action}' is not a built-in workcell action", step=step.label
            )
        except (KeyError, TypeError, ValueError, WorkflowValidationError) as exc:
            return ActionOutcome(
                flight.action_id, ActionStatus.FAILED, [Error.from_exception(exc, at=utcnow(self.clock))]
            )

    async def with_timeout(self, aw: Any) -> ActionOutcome:
        """Await an action's outcome for at most ``action_timeout_s``."""
        result: ActionOutcome = await self.clock.wait_for(aw, self.settings.action_timeout_s)
        return result

    async def after_transport_error(
        self, conn: NodeConnector, flight: Flight, step: Step, exc: Exception
    ) -> ActionOutcome:
        """The call failed mid-way: ask the node what became of the action instead of re-sending it."""
        errors = [Error.from_exception(exc, at=utcnow(self.clock))]
        for _ in range(self.settings.get_action_result_retries):
            try:
                outcome = await conn.get_action_outcome(flight.node_action_id, str(step.action))
            except asyncio.CancelledError:
                raise
            except Exception as again:
                errors.append(Error.from_exception(again, at=utcnow(self.clock)))
                await self.clock.sleep(min(self.settings.node_update_interval, 1.0))
                continue
            if outcome.status.is_terminal:
                outcome.errors = errors + outcome.errors
                return outcome
            if outcome.status in (ActionStatus.RUNNING, ActionStatus.NOT_STARTED, ActionStatus.PAUSED):
                try:
                    return await self.with_timeout(conn.await_action(flight.node_action_id, str(step.action)))
                except asyncio.CancelledError:
                    raise
                except Exception as again:
                    errors.append(Error.from_exception(again, at=utcnow(self.clock)))
                    continue
            break  # unknown to the node: it never got the action
        return ActionOutcome(
            flight.action_id, ActionStatus.FAILED if len(errors) == 1 else ActionStatus.UNKNOWN, errors
        )

    async def step_files(self, wf: Workflow, step: Step) -> dict[str, Path]:
        """The local paths of the files a step sends (its file parameters' datapoints)."""
        files: dict[str, Path] = {}
        for arg, ref in step.files.items():
            key = ref if isinstance(ref, str) else ref.key
            dp_id = wf.file_input_ids.get(key)
            if dp_id is None:
                raise WorkflowValidationError(
                    f"file parameter '{key}' has no file yet", step=step.label, field="files"
                )
            files[arg] = await self.datapoints.local_file(await self.datapoints.get(dp_id))
        return files

    async def finish_step(
        self, flight: Flight, outcome: ActionOutcome, *, journal: dict[str, Any] | None = None
    ) -> None:
        """Record a step's outcome and move the run's job, in one transaction (see :meth:`record_outcome`);
        then the claims are free and the scheduler runs.

        One fsync per step: a succeeded step followed by another is written without waiting for the disk
        (still atomic, and it survives a process crash). When the scheduler starts the next step right away,
        that step's first journal write ("acknowledged" before the node starts anything, or a built-in's
        "sent") is durable and brings this end to disk with it (a store's log is flushed in order); when it
        does not, the end's journal record is written again, durably, here. Nothing is ever started on a node
        before the previous step's end is on disk."""
        scheduled = False
        flush: Op | None = None
        try:
            async with self.lock:
                try:
                    with self.journal.change(flight.workflow_id):
                        flush = await self.record_outcome(flight, outcome, journal)
                finally:
                    self.release(flight)
                if self._is_owner() and not self._stopping():
                    # The next step's task reached the executor in that write: start what can start now,
                    # without a round through the scheduler loop.
                    self._schedule_locked()
                    scheduled = True
                nxt = self.flights.get(flight.workflow_id)
                if flush is not None and nxt is not None and nxt is not flight and not nxt.journal_version:
                    nxt.unflushed, flush = flush, None  # its first write, durable, carries this end to disk
        finally:
            self.journal.notify()
            if not scheduled:
                self._wake()
            if flush is not None:
                await self.store.apply(flush)

    def release(self, flight: Flight) -> None:
        """Free a flight's claims and forget it."""
        for c in flight.claims:
            if self.held.get(c) == flight.workflow_id:
                del self.held[c]
        if self.flights.get(flight.workflow_id) is flight:
            del self.flights[flight.workflow_id]

    async def record_outcome(
        self, flight: Flight, outcome: ActionOutcome, journal: dict[str, Any] | None
    ) -> Op | None:
        """Under ``self.lock``: the outcome's records (journal ``result``, the workflow view, datapoints,
        resource effects, history) go with what it does to the job: ``succeeded`` completes the step's task
        (the job moves on and the next step's task is dispatched in the same write), a failure fails the
        job, a cancellation cancels it, a paused node pauses it; ``not_ready`` keeps the task to try again.

        A succeeded step with a next step to start is written without waiting for the disk: returns the write
        that brings it there (see :meth:`finish_step`); any other outcome is durable when this returns (None)."""
        wf = self.workflows.get(flight.workflow_id)
        task = flight.task
        now = utcnow(self.clock)
        node = flight.claims[0].name if flight.claims and flight.claims[0].kind == "node" else None
        if node is not None:
            self.monitor.status_from_action(
                node, outcome.node_status, succeeded=outcome.status is ActionStatus.SUCCEEDED
            )
        if journal is None:
            rec = await self.store.get(ACTION_KIND, flight.action_id)
            journal = dict(rec.data) if rec is not None else {"action_id": flight.action_id, "phases": {}}
            journal.setdefault("phases", {})
        journal["phases"]["result"] = now.isoformat()
        journal["status"] = outcome.status.value
        journal_op = Put(
            ACTION_KIND,
            flight.action_id,
            journal,
            expected_version=flight.journal_version or None,
            status="result",
            group=flight.workflow_id,
        )
        current = wf.steps[flight.index] if wf is not None and flight.index < len(wf.steps) else None
        if (
            wf is None
            or current is None
            or current.result is None
            or current.result.action_id != flight.action_id
        ):
            # The workflow moved on (retried, cleared): keep the outcome in the journal only. Its task is
            # dead with it: the step runs again only on the task its retry dispatched (which may reach this
            # executor later, through the store's queue).
            if self.tasks_held.get(flight.workflow_id) is task:
                del self.tasks_held[flight.workflow_id]
            await self.store.apply(
                journal_op,
                Append(
                    flight.workflow_id, "late_result", outcome.status.value, {"action_id": flight.action_id}
                ),
            )
            flight.unflushed = None
            return None
        step = current
        ops: list[Op] = [journal_op]
        ids, dps, dp_ops = self.journal.datapoints_for(wf, step, outcome, now)
        ops += dp_ops
        result = ActionResult(
            action_id=flight.action_id,
            status=outcome.status,
            errors=outcome.errors,
            datapoints=ids or None,
            history_created_at=now,
        )
        step.result = result
        step.history.append(result)
        step.last_status_update = now
        cancelled = wf.status.cancelled
        if not cancelled:
            step.status = outcome.status
            step.end_time = now
            if step.start_time is not None:
                step.duration = now - step.start_time
        wf.status.running = False
        event = "step_finished"
        job_op: Callable[..., Any] | None = None
        held_back = False  # the task stays with the executor: the step runs again
        if cancelled:
            event = "late_result"
            job_op = self.completer(task, "cancelled", None)
        elif outcome.status == ActionStatus.SUCCEEDED:
            ops += self.journal.apply_effects(step, result, now)
            self.journal.feed_forward(wf, step, flight.index, dps)
            nxt = flight.index + 1
            if nxt >= len(wf.steps):
                wf.status.completed = True
                wf.end_time = now
                event = "completed"
            else:
                wf.status.current_step_index = nxt
                wf.step_index = nxt
            job_op = self.completer(task, "succeeded", None)
        elif outcome.status == ActionStatus.NOT_READY:
            self.not_before[wf.workflow_id] = self.clock.now() + self.settings.node_update_interval
            held_back = True
        elif outcome.status == ActionStatus.PAUSED:
            wf.status.paused = True
            held_back = True
            job_op = self.jobs.pause_job
        elif outcome.status == ActionStatus.CANCELLED:
            wf.status.cancelled = True
            wf.end_time = now
            event = "cancelled"
            job_op = self.jobs.cancel_job
        else:
            wf.status.failed = True
            wf.end_time = now
            event = "failed"
            message = "; ".join(e.message or "" for e in outcome.errors if e.message) or outcome.status.value
            job_op = self.completer(
                task,
                "failed",
                {"code": "STEP_FAILED", "message": f"step {step.label} {outcome.status.value}: {message}"},
            )
        if not held_back and self.tasks_held.get(wf.workflow_id) is task:
            del self.tasks_held[wf.workflow_id]
        data = {"step_index": flight.index, "action_id": flight.action_id, "status": outcome.status.value}
        # Deferred to the next step's first write only when one can follow at once (and this step's own
        # start made its previous step's end durable: never two ends in a row off the disk).
        defer = (
            event == "step_finished"
            and outcome.status == ActionStatus.SUCCEEDED
            and not wf.status.paused
            and flight.unflushed is None
            and self._is_owner()
            and not self._stopping()
        )
        if job_op is None:
            await self.journal.commit(wf, event, data, extra=ops)
        else:
            await self.journal.job_op(wf, event, job_op, data, extra=ops, durable=not defer)
        flight.unflushed = None
        return journal_op._replace(expected_version=None) if defer else None

    def completer(self, task: Task, status: str, error: dict[str, Any] | None) -> Callable[..., Any]:
        """The job operation that submits ``task``'s result (the workflow id is its job's)."""

        async def complete(job_id: str, *, extra_ops: list[Op], durable: bool = True) -> Any:
            return await self.jobs.complete_task(
                task.task_id,
                status,
                None,
                error,
                token=task.token,
                worker_id=self.worker_id,
                extra_ops=extra_ops,
                durable=durable,
            )

        return complete
