"""Planners over a plan and a job record: move a job to a state, park it, finish it, resume its parent,
put and withdraw its tasks.

Each method only adds ops, events and timers to a :class:`~podium.engine.core.Plan`; nothing here reads
or writes the store, awaits anything or runs a handler (the callers load the records and commit); the one
side effect is dropping the timers of withdrawn tasks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from podium.engine.core import J_PENDING, T_CANCELLED, T_QUEUED, EngineCore, Plan
from podium.engine.keys import DISPATCH_TIMER, JOB, RESULT_TIMER, STEPS_QUEUE, TASK, job_end, task_queue
from podium.engine.models import EngineEvent, JobStatus, check_transition
from podium.ids import new_ulid_str
from podium.store.base import ARCHIVED_EVENT, Append, Dequeue, Enqueue, Put, Record, Wake

__all__ = ["Transitions"]


class Transitions:
    """The state changes of jobs and tasks as plan ops (see the module docstring)."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core
        self.clock = core.clock
        self.timers = core.timers
        self.event_counts = core.event_counts

    def put_job(
        self,
        plan: Plan,
        rec: Record,
        data: dict[str, Any],
        status: JobStatus,
        event: str,
        extra: dict[str, Any] | None = None,
        event_extra: dict[str, Any] | None = None,
    ) -> None:
        """Write the job as ``status`` (a checked transition) with its history entry and event."""
        sv = str(status)  # a plain string (a StrEnum member's str() is its value)
        check_transition(rec.status or J_PENDING, sv)
        state = data["state"]
        plan.ops.append(Put(JOB, rec.id, data, rec.version, sv, data["blueprint"]))
        info = {"state": state, **extra} if extra else {"state": state}
        plan.ops.append(Append(rec.id, event, sv, info))
        counts = self.event_counts
        counts[event] = counts.get(event, 0) + 1
        if self.core.wants(event):
            ev_data = {**info, **event_extra} if event_extra else info
            plan.events.append(EngineEvent(event, rec.id, self.clock.now(), sv, state, None, ev_data))

    def goto_ops(
        self,
        plan: Plan,
        rec: Record,
        data: dict[str, Any],
        target: str,
        *,
        event: str = "transition",
        extra: dict[str, Any] | None = None,
        aggregate: bool = False,
    ) -> None:
        """Move to ``target`` and enqueue its step (or park the job if a pause was requested)."""
        step = int(data["step"]) + 1
        info = {"from": data["state"], **(extra or {})}
        data["state"], data["step"] = target, step
        data.pop("wait", None)
        if aggregate:
            data["aggregate"] = True
        else:
            data.pop("aggregate", None)
        if data.get("pause_requested"):
            data["pause_requested"] = False
            self.put_job(plan, rec, data, JobStatus.PAUSED, "job_paused", info)
            return
        plan.ops.append(Enqueue(STEPS_QUEUE, f"{rec.id}.{step}", {"job_id": rec.id, "step": step}))
        self.put_job(plan, rec, data, JobStatus.RUNNING, event, info)

    def terminal_ops(
        self, plan: Plan, rec: Record, data: dict[str, Any], status: JobStatus, parent: Record | None = None
    ) -> None:
        """Finish the job as ``status``: record it, archive a snapshot, and resume a waiting parent."""
        now = self.clock.now()
        data["finished_at"] = now
        data.pop("wait", None)
        # The event (not the history entry) also carries what a webhook needs, so no listener reads the job.
        event_extra = {
            "result": data.get("result"),
            "blueprint": data["blueprint"],
            "created_at": rec.created_at,
        }
        if data.get("webhook_url"):
            event_extra["webhook_url"] = data["webhook_url"]
        self.put_job(plan, rec, data, status, f"job_{status}", {"error": data.get("error")}, event_extra)
        snapshot = {
            "job_id": rec.id,
            "blueprint": data["blueprint"],
            "status": str(status),
            "state": data["state"],
            "initial_data": data["initial_data"],
            "state_history": data["state_history"],
            "result": data.get("result"),
            "error": data.get("error"),
            "parent_job_id": data.get("parent_job_id"),
            "created_at": rec.created_at,
            "finished_at": now,
        }
        plan.ops.append(Append(rec.id, ARCHIVED_EVENT, str(status), snapshot))
        plan.ops.append(Wake(job_end(rec.id)))  # wait_for_job on the other instances
        if parent is not None:
            self.resume_parent_ops(plan, parent, rec.id, status, data)

    def resume_parent_ops(
        self, plan: Plan, parent: Record, child_id: str, status: JobStatus, child: dict[str, Any]
    ) -> None:
        """A child job ended as ``status``: move the parent waiting for it on (or fail it)."""
        wait = parent.data.get("wait") or {}
        if parent.status != JobStatus.WAITING_FOR_CHILDREN or wait.get("child_job_id") != child_id:
            return
        outcome = "success" if status == JobStatus.FINISHED else "failure"
        transitions = wait["transitions"]
        target = transitions.get(str(status)) or transitions.get(outcome)
        new = dict(parent.data)
        sh = dict(new["state_history"])
        result = child.get("result")
        if outcome == "success":
            if isinstance(result, dict):
                sh.update(result)
            elif result is not None:
                sh[f"{wait['blueprint_name']}_result"] = result
        sh[f"sub_job_{child_id}_result"] = {
            "outcome": outcome,
            "status": str(status),
            "final_state": child["state"],
            "result": result,
            "error": child.get("error"),
        }
        new["state_history"] = sh
        if target is None:
            new["error"] = {
                "code": "CHILD_JOB_FAILED" if outcome == "failure" else "UNHANDLED_STATUS",
                "message": f"child job {child_id} ended {status} and transitions have no {outcome!r}",
            }
            self.terminal_ops(plan, parent, new, JobStatus.FAILED)
            return
        self.goto_ops(plan, parent, new, target, extra={"child_job_id": child_id, "outcome": outcome})

    def cancel_tasks_ops(self, plan: Plan, job_id: str, tasks: Iterable[Record]) -> None:
        """Withdraw open tasks of a job (their workers hear ``task_cancelled``) and drop their timers."""
        now = self.clock.now()
        for t in tasks:
            td = dict(t.data)
            td["finished_at"] = now
            plan.ops.append(Put(TASK, t.id, td, t.version, T_CANCELLED, job_id))
            plan.ops.append(Dequeue(td["queue"], f"{t.id}:{td['attempt']}"))
            self.core.ev(
                plan,
                "task_cancelled",
                job_id,
                task_id=t.id,
                data={"worker_id": td.get("worker_id"), "attempt": td["attempt"]},
            )
            self.timers.cancel(f"{DISPATCH_TIMER}{t.id}")
            self.timers.cancel(f"{RESULT_TIMER}{t.id}")

    def task_ops(
        self, plan: Plan, job_id: str, state: str, spec: dict[str, Any], *, parallel: bool = False
    ) -> str:
        """Put a new task of the job, enqueue its first attempt and arm its dispatch timeout; its id."""
        task_id = new_ulid_str()
        now = self.clock.now()
        queue = spec.get("queue") or task_queue(spec["task_type"])
        dt = spec.get("dispatch_timeout")
        data: dict[str, Any] = {
            "job_id": job_id,
            "task_type": spec["task_type"],
            "params": spec["params"],
            "queue": queue,
            "state": state,
            "attempt": 1,
        }
        # Only what is set is stored (readers use .get); plain ifs, no tuple of pairs to build per task.
        if parallel:
            data["parallel"] = True
        get = spec.get
        if value := get("priority"):
            data["priority"] = value
        if (value := get("max_retries")) is not None:
            data["max_retries"] = value
        if dt:
            data["dispatch_timeout"] = dt
        if value := get("result_timeout"):
            data["result_timeout"] = value
        if dt:
            data["dispatch_deadline"] = now + dt
        plan.ops.append(Put(TASK, task_id, data, 0, T_QUEUED, job_id))
        plan.ops.append(
            Enqueue(
                queue,
                f"{task_id}:1",
                {"task_id": task_id, "job_id": job_id, "attempt": 1},
                spec.get("priority", 0),
            )
        )
        info = {"task_id": task_id, "task_type": spec["task_type"]}
        plan.ops.append(Append(job_id, "task_dispatched", None, info))
        self.core.ev(plan, "task_dispatched", job_id, task_id=task_id, state=state, data=info)
        if dt:
            plan.timers.append((f"{DISPATCH_TIMER}{task_id}", now + dt, (task_id, 1, None)))
        return task_id
