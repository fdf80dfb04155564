"""The engine's shared core: the plan type, the one commit every decision goes through, the record caches,
events and the executor's slot accounting.

Every component holds the same :class:`EngineCore` and writes through :meth:`EngineCore.commit`. The core
owns no decision: it must not plan transitions, run handlers or talk to workers beyond the two shortcuts of
:meth:`~EngineCore.commit` (a step leased to this instance, a task leased to an in-process worker), which
call the executor and the dispatch component through the public hooks :meth:`EngineCore.wire` sets.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from podium.clock import Clock
from podium.engine.config import Config
from podium.engine.errors import JobNotFoundError, JobStateError
from podium.engine.keys import JOB, STEPS_QUEUE, TASK
from podium.engine.models import OPEN_TASK, TERMINAL_STATUSES, EngineEvent, JobStatus, TaskStatus
from podium.engine.timers import TimerQueue
from podium.store.base import Delete, Enqueue, Lease, Op, Put, Record, Store

if TYPE_CHECKING:
    from podium.engine.dispatch import Dispatch

__all__ = [
    "COMMIT_BUCKETS",
    "MAX_CONFLICT_RETRIES",
    "OPEN",
    "OPEN_TASK_STR",
    "RUNNABLE",
    "TERMINAL",
    "CommitStats",
    "EngineCore",
    "Listener",
    "Plan",
]

log = logging.getLogger("podium.engine")

Listener = Callable[[EngineEvent], Awaitable[None] | None]

# Plain-string statuses for the hot paths (an enum member's ``.value`` is a descriptor call each time).
J_PENDING, J_RUNNING = JobStatus.PENDING.value, JobStatus.RUNNING.value
T_QUEUED, T_RUNNING = TaskStatus.QUEUED.value, TaskStatus.RUNNING.value
T_CANCELLED, T_TIMED_OUT = TaskStatus.CANCELLED.value, TaskStatus.TIMED_OUT.value
OPEN_TASK_STR = tuple(s.value for s in OPEN_TASK)
# Status sets of plain strings: a record's status is a str, so these hash and compare without enum calls.
RUNNABLE = frozenset({J_PENDING, J_RUNNING})
TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)
OPEN = frozenset(OPEN_TASK_STR)
MAX_CONFLICT_RETRIES = 20


COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Upper bounds (seconds) of the store-commit latency buckets (a last, unbounded one follows)."""


class CommitStats:
    """How long the engine's store writes take: a count, a sum and bucket counts (read by metrics)."""

    __slots__ = ("buckets", "count", "total_s")
    bounds = COMMIT_BUCKETS

    def __init__(self) -> None:
        self.count = 0
        self.total_s = 0.0
        self.buckets = [0] * (len(COMMIT_BUCKETS) + 1)

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.total_s += seconds
        self.buckets[bisect.bisect_left(COMMIT_BUCKETS, seconds)] += 1


class Plan:
    """The outcome of a decision: ops to apply, then events to emit and timers to arm after commit."""

    __slots__ = ("cascade", "events", "ops", "timers")

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.events: list[EngineEvent] = []
        self.timers: list[tuple[str, float, Any]] = []
        self.cascade: list[str] = []  # child jobs to cancel after commit

    def mark(self) -> tuple[int, int, int, int]:
        """Where the plan stands now, for :meth:`rollback` (a decision tried inside the plan)."""
        return len(self.ops), len(self.events), len(self.timers), len(self.cascade)

    def rollback(self, mark: tuple[int, int, int, int]) -> None:
        """Drop everything added since ``mark``."""
        del self.ops[mark[0] :], self.events[mark[1] :], self.timers[mark[2] :], self.cascade[mark[3] :]


def _no_spawn(lease: Lease) -> None:  # pragma: no cover - replaced by wire() before anything commits
    raise RuntimeError("the engine core is not wired to an executor")


async def _no_cancel(job_id: str, reason: str) -> None:  # pragma: no cover - replaced by wire()
    raise RuntimeError("the engine core is not wired to the job operations")


class EngineCore:
    """What every component shares: store, clock, config, caches, events, slots and :meth:`commit`."""

    def __init__(self, storage: Store, config: Config, clock: Clock, instance_id: str) -> None:
        self.storage = storage
        self.config = config
        self.clock = clock
        self.instance_id = instance_id
        self.jobs: dict[str, Record] = {}  # version-checked cache of job records this instance wrote
        self.tasks: dict[str, Record] = {}
        self.listeners: list[tuple[Listener, frozenset[str] | None]] = []
        self.wanted: frozenset[str] | None = frozenset()  # event types someone listens to (None: all)
        self.event_counts: dict[str, int] = {}
        self.commit_stats = CommitStats()
        self.job_waiters: dict[str, list[asyncio.Future[Record | None]]] = {}
        self.timers = TimerQueue(clock, self._on_timer)
        self.on_timer: Callable[[str, Any], Awaitable[None]] | None = None
        self.timer_routes: dict[str, Callable[[str, Any], Awaitable[None]]] = {}
        """Timer-key prefixes (two characters) whose timers go to another component (the scheduler)."""
        # The executor's slots: commit leases new steps straight to this instance while some are free.
        self.steps: set[asyncio.Task[None]] = set()
        self.reserved = 0  # executor slots promised to steps being committed or taken
        self.slot_freed = asyncio.Event()
        self.step_wake = asyncio.Event()  # a step this instance does not run at once is in the queue
        self.started = False
        self.stopping = False
        self.spawn_step: Callable[[Lease], None] = _no_spawn
        self.cancel_job: Callable[[str, str], Awaitable[Any]] = _no_cancel
        self.dispatch: Dispatch | None = None

    def wire(
        self,
        *,
        spawn_step: Callable[[Lease], None],
        dispatch: Dispatch,
        cancel_job: Callable[[str, str], Awaitable[Any]],
        on_timer: Callable[[str, Any], Awaitable[None]],
    ) -> None:
        """Connect the hooks :meth:`commit` calls (set once by the facade that builds the components)."""
        self.spawn_step, self.dispatch, self.cancel_job, self.on_timer = (
            spawn_step,
            dispatch,
            cancel_job,
            on_timer,
        )

    async def _on_timer(self, key: str, payload: Any) -> None:
        route = self.timer_routes.get(key[:2]) if self.timer_routes else None
        if route is not None:
            await route(key, payload)
        elif self.on_timer is not None:
            await self.on_timer(key, payload)

    def free_slots(self) -> int:
        """Executor slots free for one more step."""
        return self.config.EXECUTOR_MAX_CONCURRENT_JOBS - len(self.steps) - self.reserved

    # --- records ----------------------------------------------------------------------------------

    async def load_job(self, job_id: str, *, fresh: bool = False) -> Record | None:
        """The job's record, from the cache unless ``fresh`` (open jobs are cached)."""
        rec = None if fresh else self.jobs.get(job_id)
        if rec is None:
            rec = await self.storage.get(JOB, job_id)
            if rec is not None and rec.status not in TERMINAL:
                self.jobs[job_id] = rec
        return rec

    async def load_task(self, task_id: str, *, fresh: bool = False) -> Record | None:
        """The task's record, from the cache unless ``fresh`` (open tasks are cached)."""
        rec = None if fresh else self.tasks.get(task_id)
        if rec is None:
            rec = await self.storage.get(TASK, task_id)
            if rec is not None and rec.status in OPEN:
                self.tasks[task_id] = rec
        return rec

    async def prefetch(self, task_ids: Iterable[str], job_ids: Iterable[str]) -> None:
        """Read the records of these tasks and jobs that are not cached, in one store call, into the caches
        (as :meth:`load_task` and :meth:`load_job` do one by one): an instance that takes tasks another
        created reads each task and, at its result, its job; here both in one round trip."""
        keys = [(TASK, i) for i in dict.fromkeys(task_ids) if i not in self.tasks]
        keys += [(JOB, i) for i in dict.fromkeys(job_ids) if i not in self.jobs]
        if not keys:
            return
        for rec in await self.storage.get_many(keys):
            if rec is None:
                continue
            if rec.kind == TASK and rec.status in OPEN:
                self.tasks[rec.id] = rec
            elif rec.kind == JOB and rec.status not in TERMINAL:
                self.jobs[rec.id] = rec

    def remember(self, records: Iterable[Record | None]) -> None:
        """Cache task and job records just read from the store (what a take returned with its leases, say),
        as :meth:`prefetch` does: open tasks and unfinished jobs, unless the cache holds a later version."""
        for rec in records:
            if rec is None:
                continue
            if rec.kind == TASK:
                cache, keep = self.tasks, rec.status in OPEN
            elif rec.kind == JOB:
                cache, keep = self.jobs, rec.status not in TERMINAL
            else:
                continue
            cached = cache.get(rec.id)
            if cached is not None and cached.version >= rec.version:
                continue
            if keep:
                cache[rec.id] = rec
            else:
                cache.pop(rec.id, None)

    def forget(self, ids: Iterable[str]) -> None:
        """Drop cached records (after a conflict said they are stale)."""
        for i in ids:
            self.jobs.pop(i, None)
            self.tasks.pop(i, None)

    # --- events -----------------------------------------------------------------------------------

    def subscribe(self, listener: Listener, *, types: Iterable[str] | None = None) -> Callable[[], None]:
        """Call ``listener(event)`` after every committed event (of ``types``); returns an unsubscribe."""
        entry = (listener, frozenset(types) if types is not None else None)
        self.listeners.append(entry)
        self._update_wanted()

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self.listeners.remove(entry)
            self._update_wanted()

        return unsubscribe

    def _update_wanted(self) -> None:
        wanted: set[str] = set()
        for _, types in self.listeners:
            if types is None:
                self.wanted = None
                return
            wanted |= types
        self.wanted = frozenset(wanted)

    def wants(self, type: str) -> bool:
        """Whether any listener takes events of ``type`` (so that building one is worth it)."""
        wanted = self.wanted
        return wanted is None or type in wanted

    async def emit(self, events: Sequence[EngineEvent]) -> None:
        """Hand committed events to their listeners (a failing listener is logged, not raised)."""
        for ev in events:
            for listener, types in list(self.listeners):
                if types is not None and ev.type not in types:
                    continue
                try:
                    result = listener(ev)
                    if result is not None and inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("engine event listener failed", extra={"job_id": ev.job_id})

    def ev(self, plan: Plan, type: str, job_id: str | None, **kw: Any) -> None:
        """Count an event and add it to ``plan`` if anyone listens for its type."""
        counts = self.event_counts
        counts[type] = counts.get(type, 0) + 1
        wanted = self.wanted
        if wanted is None or type in wanted:
            plan.events.append(EngineEvent(type, job_id, self.clock.now(), **kw))

    def count(self, type: str) -> None:
        """Count an event nobody listens to."""
        counts = self.event_counts
        counts[type] = counts.get(type, 0) + 1

    # --- the one write ----------------------------------------------------------------------------

    async def commit(self, plan: Plan, *, durable: bool = True) -> list[Any]:
        """Apply the plan; refresh the caches from the results; arm timers; emit events.

        Two shortcuts keep work off the store's queues without weakening anything: a step this instance
        has a free executor slot for is enqueued already leased to it, and a task an in-process worker of
        this instance has a free slot for is enqueued already leased to that worker (its record says
        ``running`` in the same write). Either starts only after the write has committed; if the process
        dies first, the lease expires and the item is taken from the store as usual.
        """
        ops = plan.ops
        inline = 0
        pushed: list[tuple[int, Any]] = []
        wake = False
        dispatch = self.dispatch
        if self.started and not self.stopping:
            free = self.free_slots()
            for i, op in enumerate(ops):
                if type(op) is not Enqueue or op.lease_owner is not None:  # ops are final named tuples
                    continue
                if op.queue == STEPS_QUEUE:
                    if inline < free:
                        ops[i] = Enqueue(
                            STEPS_QUEUE, op.id, op.payload, 0, 0.0, self.instance_id, self.config.JOB_LEASE_S
                        )
                        inline += 1
                    else:
                        wake = True
                elif dispatch is not None and dispatch.local and op.delay_s <= 0:
                    worker = dispatch.push_target(i, op, ops)
                    if worker is not None:
                        pushed.append((i, worker))
        else:
            wake = any(type(op) is Enqueue and op.queue == STEPS_QUEUE for op in ops)
        self.reserved += inline
        started = time.perf_counter()
        try:
            results = await self.storage.apply(*ops, durable=durable)
        except BaseException:
            self.reserved -= inline
            if inline:
                self.slot_freed.set()
            for _, worker in pushed:
                worker.unreserve()
            raise
        self.commit_stats.observe(time.perf_counter() - started)
        jobs, tasks = self.jobs, self.tasks
        for op, res in zip(ops, results, strict=True):
            if type(op) is Put:
                if op.kind == JOB:
                    if res.status in TERMINAL:
                        jobs.pop(op.id, None)
                        for fut in self.job_waiters.pop(op.id, ()):
                            if not fut.done():
                                fut.set_result(res)
                    else:
                        jobs[op.id] = res
                elif op.kind == TASK:
                    if res.status in OPEN:
                        tasks[op.id] = res
                    else:
                        tasks.pop(op.id, None)
            elif type(op) is Delete:
                self.forget([op.id])
            elif inline and type(op) is Enqueue and op.lease_owner == self.instance_id:
                self.reserved -= 1
                if isinstance(res, Lease):
                    self.spawn_step(res)
                else:
                    self.slot_freed.set()
        if pushed:
            assert dispatch is not None
            for i, worker in pushed:
                dispatch.deliver_pushed(plan, worker, results[i])
        if wake:
            self.step_wake.set()
        for key, when, payload in plan.timers:
            self.timers.schedule(key, when, payload)
        if plan.events:
            await self.emit(plan.events)
        for child in plan.cascade:
            with contextlib.suppress(JobStateError, JobNotFoundError):
                await self.cancel_job(child, "parent job cancelled")
        return results
