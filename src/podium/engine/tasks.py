"""Tasks from the workers' side: take (lease and record as running), progress, extend, release, complete.

A result goes through one short pipeline (:meth:`Tasks.apply_result` -> ``_plan_result``): stale check ->
record -> retry decision (:class:`~podium.engine.retries.RetryPolicy`) -> aggregate or transition, all in
one write guarded by the versions of the task and its job. It must not run handlers or take job steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from podium.engine.core import (
    MAX_CONFLICT_RETRIES,
    OPEN,
    T_QUEUED,
    T_RUNNING,
    TERMINAL,
    EngineCore,
    Plan,
)
from podium.engine.errors import InputValidationError, JobNotFoundError, TaskNotFoundError
from podium.engine.jobs import Jobs
from podium.engine.keys import DISPATCH_TIMER, JOB, RESULT_TIMER, TASK, task_queue, worker_queue
from podium.engine.models import EngineEvent, JobStatus, Task, TaskStatus
from podium.engine.planner import ActionPlanner
from podium.engine.retries import Retry, RetryPolicy
from podium.engine.transitions import Transitions
from podium.errors import ConflictError, LeaseLostError
from podium.store.base import Append, Dequeue, Enqueue, Fetch, Lease, Op, Put, Record

__all__ = ["Tasks"]

log = logging.getLogger("podium.engine")

_TASK_COMPLETED, _TASK_TIMED_OUT = str(TaskStatus.COMPLETED), str(TaskStatus.TIMED_OUT)
_TASK_CANCELLED = str(TaskStatus.CANCELLED)


_FETCH_FROM = 0.1
"""The share of recently taken tasks missing from the cache from which takes read their records."""

CLAIM_FETCH = Fetch(TASK, JOB)
"""What a worker's take reads with each task queue item (``<task id>:<attempt>``): the task's record and its
job's (the task's group), so that recording the claim needs no read of its own."""


class Tasks:
    """The worker side of the engine (see the module docstring)."""

    def __init__(
        self,
        core: EngineCore,
        jobs: Jobs,
        transitions: Transitions,
        planner: ActionPlanner,
        retries: RetryPolicy,
    ) -> None:
        self.core = core
        self.storage = core.storage
        self.config = core.config
        self.clock = core.clock
        self.jobs = jobs
        self.transitions = transitions
        self.planner = planner
        self.retries = retries
        # Where the take reads the records in its own round trip (Redis, PostgreSQL), ask it to while taken
        # tasks are often missing from this instance's cache (see _fetch); elsewhere reading them would cost
        # a round trip even for the records this instance has cached.
        self._fetches = self.storage.fetches_in_take
        self._misses = 1.0
        """Recent share of taken tasks this instance did not have cached (moving average over takes)."""

    def _fetch(self) -> Fetch | None:
        """What a take reads with its items: the tasks' records and their jobs' (:data:`CLAIM_FETCH`) while
        this instance's recent takes found a share of their tasks missing from its cache (tasks another
        instance created), nothing while it had them all (one instance: the records cost the take a read
        each, which the cache makes useless; a miss then costs one ``get_many``, and brings the fetch back)."""
        return CLAIM_FETCH if self._fetches and self._misses >= _FETCH_FROM else None

    async def take_task(
        self, worker_id: str, skills: Sequence[str], *, wait_s: float = 0.0, lease_s: float | None = None
    ) -> Task | None:
        """Lease the next task of one of ``skills`` for ``worker_id``, waiting up to ``wait_s`` (long poll)."""
        tasks = await self.take_tasks(worker_id, skills, limit=1, wait_s=wait_s, lease_s=lease_s)
        return tasks[0] if tasks else None

    async def take_tasks(
        self,
        worker_id: str,
        skills: Sequence[str],
        *,
        limit: int = 1,
        wait_s: float = 0.0,
        lease_s: float | None = None,
        steal: bool = True,
    ) -> list[Task]:
        """Lease up to ``limit`` tasks (see :meth:`take_task`); each is recorded as running before return.
        ``steal=False``: no look at the queues of loaded workers first (``WORK_STEALING_ENABLED``), for a
        caller that has just taken with ``wait_s=0`` (which looked there) and found nothing."""
        # its skills' shared queues, and its own (tasks a dispatch strategy chose it for)
        queues = [*map(task_queue, skills), *(worker_queue(worker_id, s) for s in skills)]
        lease_s = lease_s or self.config.TASK_LEASE_S
        out: list[Task] = []
        deadline = self.clock.monotonic() + wait_s
        steal = steal and self.config.WORK_STEALING_ENABLED and self.core.dispatch is not None
        while not out:
            remaining = max(0.0, deadline - self.clock.monotonic())
            if steal:
                steal = False
                leases = await self._take_or_steal(queues, worker_id, skills, lease_s, limit)
                if leases or remaining <= 0:
                    if not leases:
                        return out
                    out.extend(await self._claim_leases(leases, worker_id, lease_s))
                    continue
            leases = await self.storage.take(
                queues, owner=worker_id, lease_s=lease_s, limit=limit, wait_s=remaining, fetch=self._fetch()
            )
            if not leases:
                return out
            out.extend(await self._claim_leases(leases, worker_id, lease_s))
            if remaining <= 0:
                break
        return out

    async def _take_or_steal(
        self, queues: list[str], worker_id: str, skills: Sequence[str], lease_s: float, limit: int
    ) -> list[Lease]:
        """Take from its own queues without waiting; with none there, steal from the queues of loaded
        workers (``WORK_STEALING_ENABLED``; the store's lease on an item makes the take atomic: the loaded
        worker and every thief race for it and one wins)."""
        leases = await self.storage.take(
            queues, owner=worker_id, lease_s=lease_s, limit=limit, fetch=self._fetch()
        )
        if leases:
            return leases
        assert self.core.dispatch is not None
        victims = await self.core.dispatch.fleet.steal_queues(worker_id, skills)
        if not victims:
            return []
        leases = await self.storage.take(
            victims, owner=worker_id, lease_s=lease_s, limit=limit, fetch=self._fetch()
        )
        if leases:
            log.info(
                "worker %s stole %d task(s) from loaded workers",
                worker_id,
                len(leases),
                extra={"worker_id": worker_id},
            )
        return leases

    async def _claim_leases(self, leases: Sequence[Lease], worker_id: str, lease_s: float) -> list[Task]:
        try:
            return await self._claim_many(leases, worker_id, lease_s)
        except asyncio.CancelledError:
            # The caller left (a long poll whose worker hung up) after the store leased these: give them
            # back now rather than when their leases expire.
            await self._give_back_leases(leases)
            raise

    async def _give_back_leases(self, leases: Sequence[Lease]) -> None:
        for lease in leases:
            with contextlib.suppress(Exception):
                if not await self.release_task(lease.payload["task_id"], lease.token):
                    await self.storage.nack(lease)  # leased but not yet recorded as running

    def _claim_ops(self, plan: Plan, lease: Lease, rec: Record, worker_id: str) -> Task:
        """Plan recording ``rec`` as running under ``lease`` for ``worker_id``; the Task to hand over."""
        task_id, attempt = rec.id, lease.payload["attempt"]
        now = self.clock.now()
        d = dict(rec.data)
        rt = d.get("result_timeout")
        d.update(worker_id=worker_id, token=lease.token, taken_at=now)
        if rt:
            d["result_deadline"] = now + rt
            plan.timers.append((f"{RESULT_TIMER}{task_id}", now + rt, (task_id, attempt, lease.token)))
        plan.ops.append(Put(TASK, task_id, d, rec.version, T_RUNNING, d["job_id"]))
        self.core.ev(plan, "task_taken", d["job_id"], task_id=task_id, data={"worker_id": worker_id})
        return Task(
            task_id,
            d["job_id"],
            d["task_type"],
            d["params"],
            lease.token,
            attempt,
            lease.priority,
            worker_id,
            d.get("result_deadline"),
        )

    async def _claimed(self, task: Task, lease: Lease, lease_s: float) -> None:
        if self.core.timers:
            self.core.timers.cancel(f"{DISPATCH_TIMER}{task.task_id}")
        if task.result_deadline is not None:
            rt = task.result_deadline - self.clock.now()
            if rt > lease_s:
                with contextlib.suppress(LeaseLostError):
                    await self.storage.extend(lease, rt + 1.0)

    async def _claim_many(self, leases: Sequence[Lease], worker_id: str, lease_s: float) -> list[Task]:
        """Record every taken task as running in one write (``durable=False``: the store already holds the
        lease, so a power cut that loses this record loses nothing recovery cannot redo); on a version
        conflict fall back to claiming one by one."""
        plan = Plan()
        claimed: list[tuple[Task, Lease]] = []
        cached = sum(lease.payload["task_id"] in self.core.tasks for lease in leases)
        self._misses = 0.8 * self._misses + 0.2 * (1 - cached / len(leases))
        if all(lease.records for lease in leases):
            # the take read each task and its job (CLAIM_FETCH): as fresh as reading them now
            self.core.remember(rec for lease in leases for rec in lease.records)
        else:
            payloads = [lease.payload for lease in leases]
            await self.core.prefetch(
                (p["task_id"] for p in payloads), (p["job_id"] for p in payloads if "job_id" in p)
            )
        for lease in leases:
            task_id = lease.payload["task_id"]
            if lease.records:
                rec = self.core.tasks.get(task_id) or lease.records[0]
            else:
                rec = self.core.tasks.get(task_id) or await self.core.load_task(task_id)
            if rec is None or rec.status not in OPEN or rec.data["attempt"] != lease.payload["attempt"]:
                plan.ops.append(Dequeue(lease.queue, lease.id))  # a stale delivery
                continue
            claimed.append((self._claim_ops(plan, lease, rec, worker_id), lease))
        if not plan.ops:
            return []
        try:
            await self.core.commit(plan, durable=False)
        except ConflictError:
            self.core.forget(lease.payload["task_id"] for lease in leases)
            out = []
            for lease in leases:
                task = await self._claim(lease, worker_id, lease_s)
                if task is not None:
                    out.append(task)
            return out
        for task, lease in claimed:
            await self._claimed(task, lease, lease_s)
        return [task for task, _ in claimed]

    async def _claim(self, lease: Lease, worker_id: str, lease_s: float) -> Task | None:
        task_id, attempt = lease.payload["task_id"], lease.payload["attempt"]
        for _ in range(MAX_CONFLICT_RETRIES):
            rec = await self.core.load_task(task_id)
            if rec is None or rec.status not in OPEN or rec.data["attempt"] != attempt:
                await self.storage.apply(Dequeue(lease.queue, lease.id))  # stale delivery
                return None
            plan = Plan()
            task = self._claim_ops(plan, lease, rec, worker_id)
            try:
                await self.core.commit(plan, durable=False)
            except ConflictError:
                self.core.tasks.pop(task_id, None)
                continue
            await self._claimed(task, lease, lease_s)
            return task
        return None

    async def report_progress(self, task_id: str, progress: float, message: str | None = None) -> bool:
        """Record a running task's progress (0-100) and message on its job. Returns ``False`` when the task
        is no longer open (cancelled, timed out, done): the worker should stop."""
        if not 0 <= progress <= 100:
            raise InputValidationError("must be between 0 and 100", field="progress")
        trec = await self.core.load_task(task_id)
        if trec is None:
            raise TaskNotFoundError(f"no task {task_id!r}")
        if trec.status not in OPEN:
            return False
        job_id = trec.data["job_id"]
        ok = True

        def decide(rec: Record, plan: Plan) -> None:
            nonlocal ok
            wait = rec.data.get("wait") or {}
            if rec.status in TERMINAL or task_id not in wait.get("pending", ()):
                ok = False
                return
            new = dict(rec.data)
            new["progress"], new["progress_message"] = float(progress), message
            plan.ops.append(Put(JOB, job_id, new, rec.version, rec.status, new["blueprint"]))
            self.core.ev(
                plan,
                "task_progress",
                job_id,
                task_id=task_id,
                data={"progress": progress, "message": message},
            )

        await self.jobs.mutate(job_id, decide)
        return ok

    async def extend_task(
        self, task_id: str, token: int | None, lease_s: float | None = None, *, worker_id: str | None = None
    ) -> bool:
        """Keep a running task from being offered again: push its lease to now + ``lease_s`` (default
        ``TASK_LEASE_S``). Workers call it from their heartbeat for tasks that may outlast the lease.

        ``token`` is the delivery's (``Task.token``); without it (a heartbeat reaching an instance that did
        not hand the task out), the task's record must name ``worker_id`` as its holder and its token is
        used. Returns ``False`` when the lease is no longer held (it lapsed, or the task was withdrawn or
        leased to another worker): the task may run elsewhere, and this worker's result counts only if nobody
        took it meanwhile (see :meth:`complete_task`).
        """
        if token is None:
            rec = await self.core.load_task(task_id, fresh=True)
            if rec is None:
                raise TaskNotFoundError(f"no task {task_id!r}")
            held = rec.data.get("token")
            if worker_id is None or rec.data.get("worker_id") != worker_id or not isinstance(held, int):
                return False
            token = held
        rec = await self.core.load_task(task_id)
        if rec is not None and not self._held_by(rec, token):
            rec = await self.core.load_task(task_id, fresh=True)  # the cache may predate another's claim
        if rec is None:
            raise TaskNotFoundError(f"no task {task_id!r}")
        d = rec.data
        if not self._held_by(rec, token):
            return False
        lease = self._task_lease(task_id, d, token)
        try:
            await self.storage.extend(lease, lease_s or self.config.TASK_LEASE_S)
        except LeaseLostError:
            return False
        return True

    async def release_task(self, task_id: str, token: int) -> bool:
        """Hand a leased task back at once (a nack): it is queued again for any worker, as if its lease had
        expired now. For a worker that took a task it will not run (a long poll whose caller hung up just as
        the task was leased, a worker stopping). Returns ``False`` if ``token`` no longer holds it."""
        for _ in range(MAX_CONFLICT_RETRIES):
            rec = await self.core.load_task(task_id)
            if rec is not None and not self._held_by(rec, token):
                rec = await self.core.load_task(task_id, fresh=True)
            if rec is None:
                raise TaskNotFoundError(f"no task {task_id!r}")
            d = rec.data
            if not self._held_by(rec, token):
                return False
            try:
                await self.storage.nack(self._task_lease(task_id, d, token))
            except LeaseLostError:
                return False
            back = {
                k: v for k, v in d.items() if k not in ("worker_id", "token", "taken_at", "result_deadline")
            }
            self.core.timers.cancel(f"{RESULT_TIMER}{task_id}")
            try:
                await self.core.commit(
                    self._single(Put(TASK, task_id, back, rec.version, T_QUEUED, d["job_id"])),
                    durable=False,  # the queue already offers it again; a lost record write only looks stale
                )
            except ConflictError:
                self.core.tasks.pop(task_id, None)
                continue
            return True
        return False

    @staticmethod
    def _held_by(rec: Record, token: int) -> bool:
        """Whether the task's record says the delivery of ``token`` is running it."""
        return rec.status == T_RUNNING and rec.data.get("token") in (None, token)

    @staticmethod
    def _single(op: Op) -> Plan:
        plan = Plan()
        plan.ops.append(op)
        return plan

    @staticmethod
    def _task_lease(task_id: str, d: Mapping[str, Any], token: int) -> Lease:
        """The lease a delivery of the task holds (what the store's extend/nack check: queue, item, token)."""
        attempt = d["attempt"]
        return Lease(
            d["queue"], f"{task_id}:{attempt}", {}, 0, attempt, token, d.get("worker_id") or "", 0.0, 0.0
        )

    async def is_task_cancelled(self, task_id: str) -> bool:
        """Whether the task was withdrawn (cancelled or timed out); remote workers ask this on heartbeat."""
        rec = await self.storage.get(TASK, task_id)
        return rec is not None and rec.status in (TaskStatus.CANCELLED, TaskStatus.TIMED_OUT)

    async def complete_task(
        self,
        task_id: str,
        status: str = "success",
        data: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | str | None = None,
        *,
        token: int | None = None,
        worker_id: str | None = None,
        extra_ops: Sequence[Op] = (),
        durable: bool = True,
    ) -> str:
        """Submit a task's result. Returns what happened: ``"applied"``, ``"retry"`` (a retryable error, the
        task is queued again), or ``"ignored"`` (duplicate or late: recorded in history, changes nothing).

        ``status`` picks the transition; ``error.code`` drives retries/quarantine (see the docs).
        ``extra_ops`` are the executor's own records of the outcome (the workcell's workflow view, its action
        journal, datapoints): written in the same transaction as whatever the result leads to, also when it
        is ignored. A conflict on one of them raises :class:`~podium.errors.ConflictError` and writes nothing.
        """
        err: dict[str, Any] | None
        if error is None:
            err = None
        elif isinstance(error, str):
            err = {"code": None, "message": error}
        else:
            err = dict(error)
        result = {"status": status, "data": dict(data) if data is not None else None, "error": err}
        return await self.apply_result(
            task_id,
            result,
            source="worker",
            worker_id=worker_id,
            token=token,
            extra_ops=extra_ops,
            durable=durable,
        )

    async def apply_result(
        self,
        task_id: str,
        result: dict[str, Any],
        *,
        source: str,
        worker_id: str | None = None,
        token: int | None = None,
        expect_attempt: int | None = None,
        expect_token: int | None = None,
        expect_status: TaskStatus | None = None,
        extra_ops: Sequence[Op] = (),
        durable: bool = True,
    ) -> str:
        # The first pass may decide on cached records: a decision that writes them is guarded by their
        # versions, but ignoring a result writes neither the job nor (for a stale delivery) the task, so
        # another instance may have moved them on unseen. Ignoring is only ever decided on fresh reads.
        fresh = False
        for _ in range(MAX_CONFLICT_RETRIES):
            trec = (None if fresh else self.core.tasks.get(task_id)) or await self.core.load_task(
                task_id, fresh=fresh
            )
            if trec is None:
                raise TaskNotFoundError(f"no task {task_id!r}")
            td = trec.data
            job_id = td["job_id"]
            why = self._why_ignore(
                trec, source, token, worker_id, expect_status, expect_attempt, expect_token
            )
            if why is not None:
                if not fresh:
                    fresh = True
                    continue
                if why == "":
                    return "ignored"  # the timer is stale: the task moved on
                await self._record_ignored(job_id, task_id, why, result, worker_id, extra_ops)
                return "ignored"
            jrec = (None if fresh else self.core.jobs.get(job_id)) or await self.core.load_job(
                job_id, fresh=fresh
            )
            if jrec is None:
                raise JobNotFoundError(f"no job {job_id!r} for task {task_id!r}")
            plan = Plan()
            outcome = await self._plan_result(plan, jrec, trec, result, source, worker_id)
            if outcome == "ignored" and not fresh:
                fresh = True  # decided on a cached job record: decide again on the store's current one
                continue
            plan.ops.extend(extra_ops)
            try:
                await self.core.commit(plan, durable=durable)
            except ConflictError as exc:
                if exc.kind not in (JOB, TASK):
                    raise  # one of the caller's own records: retrying cannot help
                self.core.forget([exc.id, task_id, job_id])
                continue
            return outcome
        raise ConflictError(TASK, task_id, None, None)

    @classmethod
    def _why_ignore(
        cls,
        trec: Record,
        source: str,
        token: int | None,
        worker_id: str | None,
        expect_status: TaskStatus | None,
        expect_attempt: int | None,
        expect_token: int | None,
    ) -> str | None:
        """Why the task's record says a result must be ignored (``""``: a stale timer, not recorded), or
        ``None`` if it counts."""
        td = trec.data
        if source == "timer" and (
            trec.status != expect_status
            or td["attempt"] != expect_attempt
            or (expect_token is not None and td.get("token") != expect_token)
        ):
            return ""
        if trec.status not in OPEN:
            return f"task is already {trec.status}"
        if source == "worker":
            return cls._stale_delivery(trec, token, worker_id)
        return None

    @staticmethod
    def _stale_delivery(trec: Record, token: int | None, worker_id: str | None) -> str | None:
        """Why a worker's result for an open task must be ignored, or ``None`` if it counts.

        With a ``token`` (the delivery's lease token) the result counts only if that delivery is still the
        task's current one: the record is ``running`` under the same token. A holder whose lease expired
        still counts as long as nobody took the task since (the record still names its token); once the task
        was leased again, or queued for another attempt, the old holder's result is ignored. Tasks leased
        straight to an in-process worker carry no token in their record: there the worker id decides.
        Without a token only the worker id is checked.
        """
        d = trec.data
        holder = d.get("worker_id")
        if token is not None:
            if trec.status != TaskStatus.RUNNING:
                return f"stale delivery: the task is queued again (attempt {d['attempt']})"
            held = d.get("token")
            if held is not None and held != token:
                return f"stale lease: the task was leased again (to {holder})"
        if worker_id is not None and holder is not None and holder != worker_id:
            return f"the task is held by {holder}, not {worker_id}"
        return None

    async def _record_ignored(
        self,
        job_id: str,
        task_id: str,
        reason: str,
        result: dict[str, Any],
        worker_id: str | None,
        extra_ops: Sequence[Op] = (),
    ) -> None:
        info = {
            "task_id": task_id,
            "reason": reason,
            "result_status": result.get("status"),
            "worker_id": worker_id,
        }
        await self.storage.apply(Append(job_id, "result_ignored", None, info), *extra_ops)
        self.core.count("result_ignored")
        if self.core.wants("result_ignored"):
            ev = EngineEvent("result_ignored", job_id, self.clock.now(), task_id=task_id, data=info)
            await self.core.emit([ev])

    async def _plan_result(
        self,
        plan: Plan,
        jrec: Record,
        trec: Record,
        result: dict[str, Any],
        source: str,
        worker_id: str | None,
    ) -> str:
        """Plan a result: stale check -> record -> retry decision -> aggregate or transition."""
        task_id = trec.id
        timers = self.core.timers
        if timers:
            timers.cancel(f"{DISPATCH_TIMER}{task_id}")
            timers.cancel(f"{RESULT_TIMER}{task_id}")
        td = dict(trec.data)
        wait = jrec.data.get("wait") or {}
        if jrec.status in TERMINAL or task_id not in wait.get("pending", ()):
            closed = _TASK_CANCELLED if jrec.status == JobStatus.CANCELLED else _TASK_COMPLETED
            self._close_task(plan, trec, td, result, worker_id, closed)
            info = {
                "task_id": task_id,
                "reason": f"job is {jrec.status}",
                "result_status": result.get("status"),
            }
            plan.ops.append(Append(jrec.id, "result_ignored", None, info))
            self.core.ev(plan, "result_ignored", jrec.id, task_id=task_id, data=info)
            return "ignored"
        timed_out = source == "timer"
        err = result.get("error") or None
        self._record_result(plan, jrec.id, task_id, td, result, err, timed_out, worker_id)
        decision = self.retries.decide(trec, err, self.clock.now())
        if isinstance(decision, Retry):
            self._retry_ops(plan, jrec, trec, td, err, decision)
            return "retry"
        self._close_task(plan, trec, td, result, worker_id, _TASK_TIMED_OUT if timed_out else _TASK_COMPLETED)
        new = dict(jrec.data)
        if decision is not None:
            new["error"] = decision.error
            await self.end_with_siblings(plan, jrec, new, decision.status, task_id)
        elif wait.get("kind") == "parallel":
            self._aggregate_ops(plan, jrec, new, wait, task_id, result)
        else:
            await self._transition_ops(plan, jrec, new, wait, task_id, result, err)
        return "applied"

    def _close_task(
        self,
        plan: Plan,
        trec: Record,
        td: dict[str, Any],
        result: dict[str, Any],
        worker_id: str | None,
        status: str,
    ) -> None:
        """The task is done as ``status``: its record, and its attempt leaves the queue."""
        td.update(result=result, finished_at=self.clock.now(), completed_by=worker_id)
        plan.ops.append(Put(TASK, trec.id, td, trec.version, status, td["job_id"]))
        plan.ops.append(Dequeue(td["queue"], f"{trec.id}:{td['attempt']}"))

    def _record_result(
        self,
        plan: Plan,
        job_id: str,
        task_id: str,
        td: dict[str, Any],
        result: dict[str, Any],
        err: Any,
        timed_out: bool,
        worker_id: str | None,
    ) -> None:
        """The result's history entry and event (``task_completed``, or ``task_timeout`` from the timer)."""
        status = result.get("status")
        history_info = {
            "task_id": task_id,
            "status": status,
            "attempt": td["attempt"],
            "worker_id": worker_id,
        }
        if err:
            history_info["error"] = err
        ev_type = "task_timeout" if timed_out else "task_completed"
        plan.ops.append(Append(job_id, ev_type, status, history_info))
        if self.core.wants(ev_type):
            data = {"result": result, "attempt": td["attempt"]}
            self.core.ev(plan, ev_type, job_id, task_id=task_id, status=status, data=data)
        else:
            self.core.count(ev_type)

    def _retry_ops(
        self, plan: Plan, jrec: Record, trec: Record, td: dict[str, Any], err: Any, retry: Retry
    ) -> None:
        """Queue the task again as ``retry.attempt`` after ``retry.delay_s`` (its dispatch timeout re-armed)."""
        task_id, job_id = trec.id, jrec.id
        attempt, delay = retry.attempt, retry.delay_s
        item = Dequeue(td["queue"], f"{task_id}:{td['attempt']}")
        dt = td.get("dispatch_timeout")
        td.update(
            attempt=attempt,
            worker_id=None,
            token=None,
            result_deadline=None,
            last_error=err,
            dispatch_deadline=retry.due_at + dt if dt else None,
        )
        plan.ops.append(Put(TASK, task_id, td, trec.version, T_QUEUED, job_id))
        plan.ops.append(item)
        payload = {"task_id": task_id, "job_id": job_id, "attempt": attempt}
        plan.ops.append(Enqueue(td["queue"], f"{task_id}:{attempt}", payload, td.get("priority", 0), delay))
        info = {"task_id": task_id, "attempt": attempt, "delay_s": delay, "error": err}
        plan.ops.append(Append(job_id, "task_retry", jrec.status, info))
        data = {"attempt": attempt, "delay_s": delay, "error": err}
        self.core.ev(plan, "task_retry", job_id, task_id=task_id, data=data)
        if dt:
            plan.timers.append((f"{DISPATCH_TIMER}{task_id}", retry.due_at + dt, (task_id, attempt, None)))

    def _aggregate_ops(
        self,
        plan: Plan,
        jrec: Record,
        new: dict[str, Any],
        wait: Mapping[str, Any],
        task_id: str,
        result: dict[str, Any],
    ) -> None:
        """One task of a parallel dispatch is done: collect its result; the last one moves the job on."""
        agg = dict(new.get("aggregation_results") or {})
        agg[task_id] = result
        new["aggregation_results"] = agg
        pending = [t for t in wait["pending"] if t != task_id]
        if pending:
            new["wait"] = {**wait, "pending": pending}
            plan.ops.append(Put(JOB, jrec.id, new, jrec.version, jrec.status, new["blueprint"]))
        else:
            self.transitions.goto_ops(
                plan, jrec, new, wait["aggregate_into"], event="aggregate", aggregate=True
            )

    async def _transition_ops(
        self,
        plan: Plan,
        jrec: Record,
        new: dict[str, Any],
        wait: Mapping[str, Any],
        task_id: str,
        result: dict[str, Any],
        err: Any,
    ) -> None:
        """Follow the transition the result's status names (its data joins state_history), or fail the job."""
        status = result.get("status")
        transitions = wait.get("transitions", {})
        target = transitions.get(status)
        if target is None:
            new["error"] = {
                "code": "UNHANDLED_STATUS",
                "message": f"worker returned status {status!r}, not one of {sorted(transitions)}",
                "task_error": err,
            }
            parent = await self.planner.parent_of(new)
            self.transitions.terminal_ops(plan, jrec, new, JobStatus.FAILED, parent)
            return
        data = result.get("data")
        if isinstance(data, dict) and data:
            sh = dict(new["state_history"])
            sh.update(data)
            new["state_history"] = sh
        await self.planner.advance(plan, jrec, new, target, extra={"task_id": task_id, "status": status})

    async def end_with_siblings(
        self, plan: Plan, jrec: Record, new: dict[str, Any], status: JobStatus, task_id: str
    ) -> None:
        """End the job as ``status``, withdrawing its other pending tasks."""
        wait = jrec.data.get("wait") or {}
        others = [t for t in wait.get("pending", ()) if t != task_id]
        if others:
            recs = [
                r
                for r in [await self.core.load_task(t, fresh=True) for t in others]
                if r and r.status in OPEN
            ]
            self.transitions.cancel_tasks_ops(plan, jrec.id, recs)
        self.transitions.terminal_ops(plan, jrec, new, status, await self.planner.parent_of(new))
