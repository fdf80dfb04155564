"""Recovery: the single owner of background work per store (over :class:`~podium.store.FencedOwnership`),
the timers of open tasks, and what a dispatch or result timeout does.

Owns the recovery lock and the TimerQueue's callback. It must not take steps or tasks itself: a timeout
goes through :meth:`Tasks.apply_result <podium.engine.tasks.Tasks.apply_result>` or the plan helpers like
any other result.
"""

from __future__ import annotations

import logging
from typing import Any

from podium.engine.core import MAX_CONFLICT_RETRIES, OPEN_TASK_STR, T_TIMED_OUT, TERMINAL, EngineCore, Plan
from podium.engine.executor import Executor
from podium.engine.keys import DISPATCH_TIMER, HEARTBEAT_TIMER, RECOVERY_LOCK, RESULT_TIMER, TASK
from podium.engine.models import JobStatus, TaskStatus
from podium.engine.planner import ActionPlanner
from podium.engine.tasks import Tasks
from podium.errors import ConflictError
from podium.store import FencedOwnership
from podium.store.base import Append, Dequeue, Put, Record

__all__ = ["Recovery"]

log = logging.getLogger("podium.engine")


class Recovery:
    """Recovery ownership, task timers and timeouts (see the module docstring)."""

    def __init__(self, core: EngineCore, tasks: Tasks, planner: ActionPlanner, executor: Executor) -> None:
        self.core = core
        self.storage = core.storage
        self.config = core.config
        self.clock = core.clock
        self.tasks = tasks
        self.planner = planner
        self.executor = executor
        self._next_scan = 0.0
        self.ownership = FencedOwnership(
            core.storage,
            RECOVERY_LOCK,
            core.instance_id,
            ttl_s=core.config.RECOVERY_LOCK_TTL_S,
            clock=core.clock,
            on_acquired=self._on_acquired,
            on_held=self._on_held,
            label="engine recovery",
        )

    @property
    def is_owner(self) -> bool:
        """Whether this instance holds the store lock that makes it run recovery."""
        return self.ownership.is_owner

    async def start(self) -> None:
        """Take ownership if free (a new owner scans open tasks at once), then keep it refreshed."""
        await self.ownership.check()
        self.ownership.start()

    async def stop(self, *, release: bool = True) -> None:
        """Stop the ownership loop; with ``release`` give the lock back."""
        await self.ownership.stop(release=release)

    async def release(self) -> None:
        """Give the recovery lock back (another instance takes over at once)."""
        await self.ownership.release()

    async def _on_acquired(self, token: int) -> None:
        self._next_scan = self.clock.now() + self.config.RECOVERY_SCAN_S
        await self.recover()

    async def _on_held(self) -> None:
        """The owner re-scans open tasks every ``RECOVERY_SCAN_S`` (tasks of an instance that died)."""
        if self.clock.now() >= self._next_scan:
            self._next_scan = self.clock.now() + self.config.RECOVERY_SCAN_S
            await self.recover()

    async def recover(self) -> None:
        """Re-arm the timers of tasks left open in the store (after a restart)."""
        after: str | None = None
        while True:
            page = await self.storage.list(TASK, status=OPEN_TASK_STR, after=after, limit=500)
            for rec in page:
                self.arm_task_timers(rec)
            if len(page) < 500:
                return
            after = page[-1].id

    def arm_task_timers(self, rec: Record) -> None:
        """Arm the dispatch or result timeout an open task's record names."""
        d = rec.data
        if rec.status == TaskStatus.QUEUED and d.get("dispatch_deadline") is not None:
            self.core.timers.schedule(
                f"{DISPATCH_TIMER}{rec.id}", d["dispatch_deadline"], (rec.id, d["attempt"], None)
            )
        elif rec.status == TaskStatus.RUNNING and d.get("result_deadline") is not None:
            self.core.timers.schedule(
                f"{RESULT_TIMER}{rec.id}", d["result_deadline"], (rec.id, d["attempt"], d.get("token"))
            )

    async def on_timer(self, key: str, payload: Any) -> None:
        """A timer of the engine fired: the step heartbeat, or a task's dispatch/result timeout."""
        if key == HEARTBEAT_TIMER:
            await self.executor.heartbeat()
            return
        kind = key[:2]
        task_id, attempt, token = payload
        if kind == DISPATCH_TIMER:
            await self._dispatch_timeout(task_id, attempt)
        elif kind == RESULT_TIMER:
            await self.tasks.apply_result(
                task_id,
                {
                    "status": "failure",
                    "data": None,
                    "error": {"code": "TIMEOUT_ERROR", "message": "no result within result_timeout"},
                },
                source="timer",
                expect_attempt=attempt,
                expect_token=token,
                expect_status=TaskStatus.RUNNING,
            )

    async def _dispatch_timeout(self, task_id: str, attempt: int) -> None:
        for _ in range(MAX_CONFLICT_RETRIES):
            trec = await self.core.load_task(task_id, fresh=True)
            if trec is None or trec.status != TaskStatus.QUEUED or trec.data["attempt"] != attempt:
                return
            td = dict(trec.data)
            if td.get("dispatch_deadline") is not None and td["dispatch_deadline"] > self.clock.now():
                self.core.timers.schedule(
                    f"{DISPATCH_TIMER}{task_id}", td["dispatch_deadline"], (task_id, attempt, None)
                )
                return
            # Fresh: whether the job still waits for the task decides whether the timeout moves it on,
            # and a job that does not is not written (so a stale cached record would go unnoticed).
            jrec = await self.core.load_job(td["job_id"], fresh=True)
            if jrec is None:
                return
            plan = Plan()
            td.update(finished_at=self.clock.now(), result={"status": "dispatch_timeout"})
            plan.ops.append(Put(TASK, task_id, td, trec.version, T_TIMED_OUT, td["job_id"]))
            plan.ops.append(Dequeue(td["queue"], f"{task_id}:{attempt}"))
            plan.ops.append(Append(td["job_id"], "task_timeout", "dispatch_timeout", {"task_id": task_id}))
            self.core.ev(
                plan, "task_timeout", td["job_id"], task_id=task_id, data={"kind": "dispatch_timeout"}
            )
            wait = jrec.data.get("wait") or {}
            if jrec.status not in TERMINAL and task_id in wait.get("pending", ()):
                new = dict(jrec.data)
                target = (wait.get("transitions") or {}).get("timeout")
                if target is not None:
                    await self.planner.advance(
                        plan, jrec, new, target, extra={"task_id": task_id, "status": "timeout"}
                    )
                else:
                    new["error"] = {
                        "code": "DISPATCH_TIMEOUT",
                        "message": f"no worker took task {task_id} ({td['task_type']}) within "
                        f"{td['dispatch_timeout']} s",
                    }
                    await self.tasks.end_with_siblings(plan, jrec, new, JobStatus.FAILED, task_id)
            try:
                await self.core.commit(plan)
                return
            except ConflictError as exc:
                self.core.forget([exc.id, task_id, td["job_id"]])
