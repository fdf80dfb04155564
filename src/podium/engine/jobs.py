"""Jobs: create, read, wait for, and operate on jobs (cancel, pause, resume, retry, approve/reject).

Owns the job side of the public API and the read-decide-apply loop of job operations (:meth:`Jobs.mutate`).
It must not run handlers or take tasks: what a job does next is planned by the
:class:`~podium.engine.planner.ActionPlanner` and :class:`~podium.engine.transitions.Transitions`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from podium.clock import SystemClock
from podium.engine.context import ClientConfig
from podium.engine.core import MAX_CONFLICT_RETRIES, OPEN_TASK_STR, RUNNABLE, TERMINAL, EngineCore, Plan
from podium.engine.errors import JobNotFoundError, JobStateError, TaskNotFoundError
from podium.engine.keys import JOB, STEPS_QUEUE, TASK, job_end
from podium.engine.models import JobStatus, JobView, TaskView
from podium.engine.planner import ActionPlanner
from podium.engine.registry import Registry, validated_input
from podium.engine.transitions import Transitions
from podium.errors import ConflictError
from podium.ids import new_ulid_str
from podium.store.base import ARCHIVED_EVENT, Append, Dequeue, Enqueue, HistoryEntry, Op, Put, Record

__all__ = ["Jobs", "job_view", "task_view"]

_PEEKED_VIEWS = 4096
"""How many jobs' last peeked views :meth:`Jobs.peek_job` keeps (all are dropped when it is full)."""


def job_view(rec: Record) -> JobView:
    """The public view of a job record."""
    d = rec.data
    return JobView(
        job_id=rec.id,
        blueprint=d["blueprint"],
        status=rec.status or "",
        state=d["state"],
        initial_data=d["initial_data"],
        state_history=d["state_history"],
        progress=d.get("progress"),
        progress_message=d.get("progress_message"),
        result=d.get("result"),
        error=d.get("error"),
        parent_job_id=d.get("parent_job_id"),
        created_at=rec.created_at,
        updated_at=rec.updated_at,
        finished_at=d.get("finished_at"),
        version=rec.version,
        webhook_url=d.get("webhook_url"),
        waiting=d.get("wait"),
        client=d.get("client"),
    )


def task_view(rec: Record) -> TaskView:
    """The public view of a task record."""
    d = rec.data
    return TaskView(
        rec.id,
        d["job_id"],
        d["task_type"],
        rec.status or "",
        d["attempt"],
        d.get("worker_id"),
        d["params"],
        d.get("result"),
        rec.created_at,
        rec.updated_at,
    )


def _time_up(fut: asyncio.Future[Record | None]) -> None:
    """A job waiter's poll interval is over: wake it with None (it re-reads the store)."""
    if not fut.done():
        fut.set_result(None)


class Jobs:
    """The job side of the engine (see the module docstring)."""

    def __init__(
        self, core: EngineCore, registry: Registry, transitions: Transitions, planner: ActionPlanner
    ) -> None:
        self.core = core
        self.storage = core.storage
        self.config = core.config
        self.clock = core.clock
        self.registry = registry
        self.transitions = transitions
        self.planner = planner
        self._waiter_tick: asyncio.TimerHandle | None = None  # wakes every waiter to re-read (system clock)
        self._waiter_tick_loop: asyncio.AbstractEventLoop | None = None
        # the last view peek_job made of each job, with what identifies the record it came from
        self._peeked: dict[str, tuple[tuple[int, float, float], JobView]] = {}

    async def create_job(
        self,
        blueprint: str,
        initial_data: Mapping[str, Any] | None = None,
        *,
        webhook_url: str | None = None,
        dispatch_timeout: float | None = None,
        result_timeout: float | None = None,
        client: ClientConfig | Mapping[str, Any] | None = None,
        job_id: str | None = None,
        extra_ops: Sequence[Op] = (),
        policy: Mapping[str, Any] | None = None,
    ) -> str:
        """Create a job of a blueprint (by name or API endpoint) and return its id.

        ``initial_data`` is validated against the blueprint's ``input_schema``: a mismatch raises
        :class:`~podium.engine.errors.InputValidationError` naming the field, and nothing is written.
        ``extra_ops`` (the caller's own records of the job, see :meth:`complete_task`) join its first write.
        """
        definition = self.registry.get_definition(blueprint)
        data = validated_input(definition, initial_data or {})
        job_id = job_id or new_ulid_str()
        plan = Plan()
        await self.planner.new_job_ops(
            plan,
            definition,
            job_id,
            data,
            webhook_url=webhook_url,
            dispatch_timeout=dispatch_timeout,
            result_timeout=result_timeout,
            client=client,
            parent_job_id=None,
            depth=0,
            policy=policy,
        )
        plan.ops.extend(extra_ops)
        await self.core.commit(plan)
        return job_id

    async def get_job(self, job_id: str) -> JobView:
        """The job's current status, state, progress, result and error."""
        rec = await self.storage.get(JOB, job_id)
        if rec is None:
            raise JobNotFoundError(f"no job {job_id!r}")
        return job_view(rec)

    def peek_job(self, job_id: str) -> JobView | None:
        """The job's view when the store knows it at once (:meth:`~podium.store.base.Store.peek`), as
        :meth:`get_job` would return it now; ``None``: read it with :meth:`get_job`. A record peeked again
        unchanged (same version, created and updated at the same times) gives the view made the first time:
        the same object, to be read, not changed (a status poller asks a job many times between changes)."""
        seen = self._peeked.get(job_id)
        if seen is not None and seen[0] == self.storage.peek_mark(JOB, job_id):
            return seen[1]  # unchanged: not decoded again
        rec = self.storage.peek(JOB, job_id)
        if rec is None:
            return None
        mark = (rec.version, rec.created_at, rec.updated_at)
        if len(self._peeked) >= _PEEKED_VIEWS:
            self._peeked.clear()  # the jobs being polled now come back at once
        view = job_view(rec)
        self._peeked[job_id] = (mark, view)
        return view

    async def list_jobs(
        self,
        *,
        status: str | Sequence[str] | None = None,
        blueprint: str | None = None,
        after: str | None = None,
        limit: int = 100,
        descending: bool = False,
    ) -> list[JobView]:
        """Jobs filtered by status and blueprint, in creation order, paged by ``after`` (a job id)."""
        recs = await self.storage.list(
            JOB, status=status, group=blueprint, after=after, limit=limit, descending=descending
        )
        return [job_view(r) for r in recs]

    async def count_jobs(
        self,
        *,
        status: str | Sequence[str] | None = None,
        blueprint: str | None = None,
        client: str | None = None,
    ) -> int:
        """How many jobs match; ``client``: only those created for that API client (by name; this reads the
        matching records, where the other filters are one count)."""
        if client is None:
            return await self.storage.count(JOB, status=status, group=blueprint)
        n, after = 0, None
        while True:
            page = await self.storage.list(JOB, status=status, group=blueprint, after=after, limit=500)
            n += sum(1 for r in page if (r.data.get("client") or {}).get("token") == client)
            if len(page) < 500:
                return n
            after = page[-1].id

    async def job_history(self, job_id: str, *, limit: int = 1000) -> list[HistoryEntry]:
        """Every history entry of the job (transitions, tasks, results), oldest first."""
        return await self.storage.history(job_id, limit=limit)

    async def list_tasks(self, job_id: str) -> list[TaskView]:
        """The tasks a job dispatched."""
        recs = await self.storage.list(TASK, group=job_id, limit=10_000)
        return [task_view(r) for r in recs]

    async def get_task(self, task_id: str) -> TaskView:
        """One task."""
        rec = await self.storage.get(TASK, task_id)
        if rec is None:
            raise TaskNotFoundError(f"no task {task_id!r}")
        return task_view(rec)

    async def wait_for_job(self, job_id: str, *, timeout_s: float | None = None) -> JobView:
        """Wait until the job is terminal and return it; :class:`TimeoutError` after ``timeout_s``.

        Woken by this instance's own commit of the terminal state, and by the store's wake-up of the job's
        end (:func:`~podium.engine.keys.job_end`) that the ending commit sends whichever instance makes it
        (Redis pub/sub, PostgreSQL ``NOTIFY``; in-process only on SQLite and memory): the waiter then reads
        the store. It also re-reads the store every ``EXECUTOR_POLL_WAIT_S`` (a wake-up lost with a
        connection, a SQLite file shared by processes). The store is read first, even for a job this
        instance has cached: another instance may have ended it before this waiter registered, and no
        wake-up would come for that end. On the system
        clock one engine-wide timer wakes all waiters without a deadline for that re-read (no timer of its
        own per waiter: a batch of jobs waited on at once is common).
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Record | None] = loop.create_future()
        waiters = self.core.job_waiters
        waiters.setdefault(job_id, []).append(fut)
        storage, name = self.storage, job_end(job_id)
        woken = self._watch_end(job_id, name)  # registered before the store is read: no end slips between
        deadline = None if timeout_s is None else self.clock.monotonic() + timeout_s
        on_loop_timer = type(self.clock) is SystemClock
        try:
            while True:
                view = await self.get_job(job_id)
                if view.status in TERMINAL:
                    return view
                wait = self.config.EXECUTOR_POLL_WAIT_S
                if deadline is not None:
                    left = deadline - self.clock.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"job {job_id} did not end within {timeout_s} s")
                    wait = min(wait, left)
                rec: Record | None
                if on_loop_timer and deadline is None:
                    self._arm_waiter_tick(loop)
                    rec = await fut
                elif on_loop_timer:
                    # The loop's own timer resolves the future with None (what asyncio.wait_for arms,
                    # without its extra future and callbacks per wait).
                    handle = loop.call_later(wait, _time_up, fut)
                    try:
                        rec = await fut
                    finally:
                        handle.cancel()
                else:
                    try:
                        rec = await self.clock.wait_for(fut, wait)
                    except TimeoutError:
                        rec = None  # wait_for cancelled the future
                if rec is None:
                    # Timed out or woken by the store: a fresh future (and store watch) takes this one's
                    # place before the store is read again.
                    mine = waiters.setdefault(job_id, [])
                    if fut in mine:
                        mine.remove(fut)
                    fut = loop.create_future()
                    mine.append(fut)
                    if woken.done():
                        woken = self._watch_end(job_id, name)
                    continue
                return job_view(rec)  # the terminal record this instance just committed
        finally:
            storage.unwatch(name, woken)
            remaining = waiters.get(job_id)
            if remaining is not None and fut in remaining:
                remaining.remove(fut)
                if not remaining:
                    del waiters[job_id]

    def _watch_end(self, job_id: str, name: str) -> asyncio.Future[None]:
        """Watch the store for the job's end; when it comes, wake this job's waiters to read the store."""
        woken = self.storage.watch(name)
        waiters = self.core.job_waiters

        def wake(_: asyncio.Future[None]) -> None:
            for fut in waiters.get(job_id, ()):
                if not fut.done():
                    fut.set_result(None)

        woken.add_done_callback(wake)
        return woken

    def _arm_waiter_tick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._waiter_tick is None or self._waiter_tick_loop is not loop:
            self._waiter_tick_loop = loop
            self._waiter_tick = loop.call_later(self.config.EXECUTOR_POLL_WAIT_S, self._wake_waiters)

    def _wake_waiters(self) -> None:
        """The poll interval is over: wake every job waiter with None (each re-reads the store)."""
        self._waiter_tick = None
        for futs in self.core.job_waiters.values():
            for fut in futs:
                if not fut.done():
                    fut.set_result(None)

    async def get_archived_job(self, job_id: str) -> dict[str, Any]:
        """The archived snapshot of a finished job plus its events."""
        entries = await self.storage.history(job_id, event=ARCHIVED_EVENT)
        if not entries:
            raise JobNotFoundError(f"job {job_id!r} is not archived (not finished yet, or unknown)")
        snapshot = dict(entries[-1].data)
        snapshot["events"] = [
            {"seq": e.seq, "event": e.event, "status": e.status, "ts": e.ts, "data": e.data}
            for e in await self.storage.history(job_id)
        ]
        return snapshot

    async def list_archived_jobs(
        self,
        *,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        after_seq: int = 0,
    ) -> list[dict[str, Any]]:
        """Archived job snapshots filtered by final status and archive time (``since`` <= ts < ``until``)."""
        entries = await self.storage.history(
            event=ARCHIVED_EVENT, status=status, since=since, until=until, limit=limit, after_seq=after_seq
        )
        return [{**e.data, "archived_at": e.ts, "seq": e.seq} for e in entries]

    async def mutate(
        self, job_id: str, decide: Callable[[Record, Plan], None], extra_ops: Sequence[Op] = ()
    ) -> Record:
        """Read-decide-apply with the job's version as guard, retried on conflict. ``extra_ops`` (a caller's
        own records, see :meth:`complete_task`) join the write when the decision writes anything."""
        fresh = False
        for _ in range(MAX_CONFLICT_RETRIES):
            rec = await self.core.load_job(job_id, fresh=fresh)
            if rec is None:
                raise JobNotFoundError(f"no job {job_id!r}")
            plan = Plan()
            try:
                decide(rec, plan)
            except JobStateError:
                if fresh:
                    raise
                fresh = True  # refusals are only decided on the store's current record
                continue
            if not plan.ops:
                if not fresh:
                    fresh = True  # so is a decision to write nothing
                    continue
                if extra_ops:
                    await self.storage.apply(*extra_ops)
                return rec
            plan.ops.extend(extra_ops)
            try:
                results = await self.core.commit(plan)
            except ConflictError as exc:
                if exc.kind != JOB or exc.id != job_id:
                    raise
                self.core.jobs.pop(job_id, None)
                continue
            for op, res in zip(plan.ops, results, strict=True):
                if isinstance(op, Put) and op.kind == JOB and op.id == job_id:
                    assert isinstance(res, Record)
                    return res
            return rec
        raise ConflictError(JOB, job_id, None, None)

    async def cancel_job(
        self, job_id: str, *, reason: str | None = None, extra_ops: Sequence[Op] = ()
    ) -> JobView:
        """Cancel a job: open tasks are withdrawn (their workers are told), children cancelled too.

        A result that arrives afterwards is recorded and ignored. Cancelling a terminal job raises
        :class:`~podium.engine.errors.JobStateError`.
        """
        open_tasks = {r.id: r for r in await self.storage.list(TASK, group=job_id, status=OPEN_TASK_STR)}

        def decide(rec: Record, plan: Plan) -> None:
            if rec.status in TERMINAL:
                raise JobStateError(f"job {job_id} is already {rec.status}")
            data = dict(rec.data)
            data["error"] = {"code": "CANCELLED", "message": reason or "cancelled"}
            wait = data.get("wait") or {}
            if wait.get("kind") == "child":
                plan.cascade.append(wait["child_job_id"])
            self.transitions.cancel_tasks_ops(plan, job_id, open_tasks.values())
            self.transitions.terminal_ops(plan, rec, data, JobStatus.CANCELLED)
            plan.ops.append(Dequeue(STEPS_QUEUE, f"{job_id}.{data['step']}"))

        for _ in range(MAX_CONFLICT_RETRIES):
            try:
                rec = await self.mutate(job_id, decide, extra_ops)
                return job_view(rec)
            except ConflictError as exc:
                if exc.kind == TASK:
                    self.core.forget(open_tasks)
                    open_tasks = {
                        r.id: r for r in await self.storage.list(TASK, group=job_id, status=OPEN_TASK_STR)
                    }
                    continue
                raise
        raise ConflictError(JOB, job_id, None, None)

    async def approve(self, job_id: str, data: Mapping[str, Any] | None = None) -> JobView:
        """Approve a job waiting for approval (``decision="approved"``)."""
        return await self.resolve_approval(job_id, "approved", data)

    async def reject(self, job_id: str, data: Mapping[str, Any] | None = None) -> JobView:
        """Reject a job waiting for approval (``decision="rejected"``)."""
        return await self.resolve_approval(job_id, "rejected", data)

    async def resolve_approval(
        self, job_id: str, decision: str, data: Mapping[str, Any] | None = None, *, token: str | None = None
    ) -> JobView:
        """Resume a job waiting for approval with ``decision`` (a key of its transitions); ``data`` is merged
        into ``state_history``. Raises JobStateError if the job is not waiting or the decision is unknown."""

        def decide(rec: Record, plan: Plan) -> None:
            wait = rec.data.get("wait") or {}
            if rec.status != JobStatus.WAITING_FOR_APPROVAL or wait.get("kind") != "approval":
                raise JobStateError(f"job {job_id} is {rec.status}, not waiting for approval")
            expected = wait.get("token")
            if token is not None and (
                not isinstance(expected, str) or not secrets.compare_digest(str(token), expected)
            ):
                raise JobStateError(f"job {job_id}: wrong approval token")
            target = wait["transitions"].get(decision)
            if target is None:
                raise JobStateError(
                    f"job {job_id}: decision {decision!r} is not one of {sorted(wait['transitions'])}"
                )
            new = dict(rec.data)
            sh = dict(new["state_history"])
            sh.update(dict(data or {}))
            sh["approval"] = {"decision": decision, "data": dict(data or {})}
            new["state_history"] = sh
            self.transitions.goto_ops(plan, rec, new, target, event="approval", extra={"decision": decision})

        rec = await self.mutate(job_id, decide)
        return job_view(rec)

    async def pause_job(self, job_id: str, *, extra_ops: Sequence[Op] = ()) -> JobView:
        """Pause: a job between steps stops before its next handler; a waiting job pauses when its wait ends."""

        def decide(rec: Record, plan: Plan) -> None:
            if rec.status in TERMINAL:
                raise JobStateError(f"job {job_id} is already {rec.status}")
            new = dict(rec.data)
            if rec.status in RUNNABLE:
                new["paused_from"] = rec.status
                plan.ops.append(Dequeue(STEPS_QUEUE, f"{job_id}.{new['step']}"))
                self.transitions.put_job(plan, rec, new, JobStatus.PAUSED, "job_paused")
            elif rec.status != JobStatus.PAUSED:
                new["pause_requested"] = True
                plan.ops.append(Put(JOB, job_id, new, rec.version, rec.status, new["blueprint"]))
                plan.ops.append(Append(job_id, "pause_requested", rec.status, {}))

        return job_view(await self.mutate(job_id, decide, extra_ops))

    async def resume_job(self, job_id: str, *, extra_ops: Sequence[Op] = ()) -> JobView:
        """Resume a paused job (its pending step runs) or withdraw a pause request."""

        def decide(rec: Record, plan: Plan) -> None:
            new = dict(rec.data)
            if rec.status == JobStatus.PAUSED:
                new.pop("paused_from", None)
                new["pause_requested"] = False
                plan.ops.append(
                    Enqueue(STEPS_QUEUE, f"{job_id}.{new['step']}", {"job_id": job_id, "step": new["step"]})
                )
                self.transitions.put_job(plan, rec, new, JobStatus.RUNNING, "job_resumed")
            elif new.get("pause_requested"):
                new["pause_requested"] = False
                plan.ops.append(Put(JOB, job_id, new, rec.version, rec.status, new["blueprint"]))
            else:
                raise JobStateError(f"job {job_id} is {rec.status}, not paused")

        return job_view(await self.mutate(job_id, decide, extra_ops))

    async def retry_job(
        self,
        job_id: str,
        *,
        state: str | None = None,
        allow_finished: bool = False,
        extra_ops: Sequence[Op] = (),
    ) -> JobView:
        """Run a failed, quarantined or cancelled job again from ``state`` (default: where it stopped);
        with ``allow_finished`` a finished job too (a workcell workflow run again from a step)."""
        allowed = {JobStatus.FAILED, JobStatus.QUARANTINED, JobStatus.CANCELLED}
        if allow_finished:
            allowed.add(JobStatus.FINISHED)

        def decide(rec: Record, plan: Plan) -> None:
            if rec.status not in allowed:
                raise JobStateError(
                    f"job {job_id} is {rec.status}; only {'/'.join(sorted(allowed))} jobs retry"
                )
            definition = self.registry.get_definition(rec.data["blueprint"])
            target = state or rec.data["state"]
            if target not in definition.states:
                raise JobStateError(f"job {job_id}: {target!r} is not a state of {definition.name}")
            new = dict(rec.data)
            new.update(error=None, result=None, finished_at=None, wait=None, aggregate=False)
            self.transitions.goto_ops(plan, rec, new, target, event="job_retried")

        return job_view(await self.mutate(job_id, decide, extra_ops))
