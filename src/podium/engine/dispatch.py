"""Dispatch to workers: the in-process workers of this instance (:class:`LocalWorker`), tasks leased straight
to one of them in the write that dispatches them, and the worker registry.

Owns the queue -> local workers map and the worker records. It must not decide what a result means (see
:mod:`podium.engine.tasks`); local workers reach it only through its public methods (:meth:`Dispatch.attach`,
:meth:`Dispatch.detach`, :meth:`Dispatch.give_back`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from podium.engine.core import T_RUNNING, EngineCore, Plan
from podium.engine.errors import JobNotFoundError, TaskNotFoundError
from podium.engine.fleet import WorkerRegistry
from podium.engine.keys import (
    DISPATCH_TIMER,
    RESULT_TIMER,
    TASK,
    WORKER,
    WORKER_LIVE,
    task_queue,
    worker_queue,
)
from podium.engine.models import EngineEvent, Task, WorkerView
from podium.engine.strategy import WorkerState
from podium.errors import ConflictError
from podium.store.base import Enqueue, Lease, Op, Put

if TYPE_CHECKING:
    from podium.engine.tasks import Tasks

__all__ = ["Dispatch", "HeartbeatAnswer", "LocalWorker", "WorkerState"]


class HeartbeatAnswer(NamedTuple):
    """What a heartbeat hands back: commands queued for the worker (by any instance), and when it last
    registered (an instance holding an older registration of it reads the new one)."""

    commands: list[dict[str, Any]]
    registered_at: float


class LocalWorker(Protocol):
    """A worker in the engine's process that tasks may be leased straight to (``InProcessWorker``, the
    workcell's step executor). The engine reserves a slot before the write, then delivers or unreserves."""

    worker_id: str
    lease_s: float | None

    @property
    def skills(self) -> list[str]:
        """The task types it executes."""

    @property
    def running(self) -> int:
        """Tasks executing now."""

    def free_slots(self) -> int:
        """Slots free for one more task (0 while stopped)."""

    def reserve(self) -> None:
        """Hold a slot for a task about to be handed over."""

    def unreserve(self) -> None:
        """Give back a slot held by :meth:`reserve`."""

    def deliver(self, task: Task, lease: Lease | None = None) -> None:
        """Run a task leased to it (after the lease was committed)."""


class Dispatch:
    """Local workers, tasks pushed to them, and the worker registry (see the module docstring)."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core
        self.storage = core.storage
        self.config = core.config
        self.clock = core.clock
        self.instance_id = core.instance_id
        self.workers: dict[str, Any] = {}  # worker id -> in-process worker added to the engine
        self.local: dict[str, list[LocalWorker]] = {}  # task queue -> started in-process workers
        self.tasks: Tasks | None = None
        self.fleet = WorkerRegistry(core)
        """Remote workers (registrations, heartbeats, reputation) in the store, shared by every instance."""

    def attach(self, worker: LocalWorker) -> None:
        """A started in-process worker (or a remote worker's waiting long poll): new tasks of its skills, and
        tasks a dispatch strategy chose it for, may be leased straight to it."""
        skills = worker.skills
        for queue in [*map(task_queue, skills), *(worker_queue(worker.worker_id, s) for s in skills)]:
            workers = self.local.setdefault(queue, [])
            if worker not in workers:
                workers.append(worker)

    def detach(self, worker: LocalWorker) -> None:
        """A stopping in-process worker: no more tasks are leased straight to it."""
        for workers in self.local.values():
            if worker in workers:
                workers.remove(worker)

    async def give_back(self, task: Task) -> None:
        """Return a task an in-process worker gave up on while stopping: it is due again now."""
        assert self.tasks is not None
        with contextlib.suppress(TaskNotFoundError):
            await self.tasks.release_task(task.task_id, task.token)

    def push_target(self, i: int, op: Enqueue, ops: list[Op]) -> LocalWorker | None:
        """Lease a new task straight to an in-process worker with a free slot (rewriting ``op`` and the
        task's record in ``ops``), or return None to leave it in the queue for whoever takes it first."""
        workers = self.local.get(op.queue)
        if not workers:
            return None
        worker = next((w for w in workers if w.free_slots() > 0), None)
        if worker is None:
            return None
        task_id = op.payload.get("task_id")
        j = next(
            (k for k, p in enumerate(ops) if isinstance(p, Put) and p.kind == TASK and p.id == task_id), None
        )
        if j is None:
            return None
        put = ops[j]
        assert isinstance(put, Put)
        now = self.clock.now()
        d = dict(put.data)
        d.update(worker_id=worker.worker_id, taken_at=now)
        d.pop("dispatch_deadline", None)
        rt = d.get("result_timeout")
        lease_s = worker.lease_s or self.config.TASK_LEASE_S
        if rt:
            d["result_deadline"] = now + rt
            lease_s = max(lease_s, rt + 1.0)
        ops[j] = Put(TASK, put.id, d, put.expected_version, T_RUNNING, put.group)
        ops[i] = Enqueue(op.queue, op.id, op.payload, op.priority, 0.0, worker.worker_id, lease_s)
        worker.reserve()
        return worker

    def deliver_pushed(self, plan: Plan, worker: LocalWorker, lease: Any) -> None:
        """After the write: hand the task to the worker it was leased to (or free the slot)."""
        worker.unreserve()
        if not isinstance(lease, Lease):
            return
        task_id, attempt = lease.payload["task_id"], lease.payload["attempt"]
        rec = self.core.tasks.get(task_id)
        if rec is None:
            return
        d = rec.data
        self.core.timers.cancel(f"{DISPATCH_TIMER}{task_id}")
        plan.timers = [t for t in plan.timers if t[0] != f"{DISPATCH_TIMER}{task_id}"]
        deadline = d.get("result_deadline")
        if deadline is not None:
            plan.timers.append((f"{RESULT_TIMER}{task_id}", deadline, (task_id, attempt, None)))
        if self.core.wants("task_taken"):
            self.core.ev(
                plan, "task_taken", d["job_id"], task_id=task_id, data={"worker_id": worker.worker_id}
            )
        else:
            self.core.count("task_taken")
        worker.deliver(
            Task(
                task_id,
                d["job_id"],
                d["task_type"],
                d["params"],
                lease.token,
                attempt,
                lease.priority,
                worker.worker_id,
                deadline,
            ),
            lease,
        )

    async def register_worker_record(
        self,
        worker_id: str,
        skills: Sequence[str],
        *,
        capacity: int = 1,
        kind: str = "in_process",
        info: Mapping[str, Any] | None = None,
    ) -> None:
        """Record an executor in the registry. A remote worker's ``info`` (``skill_infos``: each skill's
        declared contract, ``cost_per_skill``, ``hot_skills``, ``worker_type``) makes it a dispatch candidate
        on every instance sharing the store."""
        info = dict(info or {})
        now = self.clock.now()
        data = {
            "skills": list(skills),
            "capacity": capacity,
            "kind": kind,
            "info": info,
            "registered_at": now,
            "last_seen": now,
            "instance": self.instance_id,
        }
        ops: list[Op] = [Put(WORKER, worker_id, data, None, "online", kind)]
        if kind == "remote":
            ops += self.fleet.registration_ops(worker_id, info, now)
        await self.storage.apply(*ops)
        if kind == "remote":
            await self.fleet.registered(worker_id, data)
        self.core.count("worker_registered")
        if self.core.wants("worker_registered"):
            ev = EngineEvent(
                "worker_registered", None, self.clock.now(), data={"worker_id": worker_id, **data}
            )
            await self.core.emit([ev])

    async def heartbeat_worker(
        self,
        worker_id: str,
        *,
        status: str = "online",
        load: int | None = None,
        hot_skills: Sequence[str] | None = None,
    ) -> HeartbeatAnswer:
        """A worker's heartbeat; the commands queued for it (:meth:`command_worker`) and when it last
        registered. A remote worker's (``status``, ``load``: tasks it holds, ``hot_skills``) goes to its
        heartbeat record without a flush; ``offline`` marks any worker gone (durably) and no longer a
        candidate. Unknown workers raise :class:`JobNotFoundError`."""
        if status != "offline":
            got = await self.fleet.heartbeat(worker_id, status=status, load=load, hot_skills=hot_skills)
            if got is not None:
                return HeartbeatAnswer(*got)
        rec = await self.storage.get(WORKER, worker_id)
        if rec is None or (rec.group == "remote" and status != "offline"):
            # a remote worker without a heartbeat record left (or was never registered): it registers again
            raise JobNotFoundError(f"no worker {worker_id!r}")
        if status == "offline":
            await self.fleet.offline(worker_id)
        data = {**rec.data, "last_seen": self.clock.now()}
        with contextlib.suppress(ConflictError):
            await self.storage.apply(
                Put(WORKER, worker_id, data, rec.version, status, rec.group), durable=status == "offline"
            )
        return HeartbeatAnswer([], float(rec.data.get("registered_at", 0.0)))

    async def command_worker(self, worker_id: str, command: Mapping[str, Any]) -> bool:
        """Queue a command (``{"command": "drain"}``) for a remote worker's next heartbeat, on whichever
        instance it arrives; ``False`` for a worker not registered (or gone)."""
        return await self.fleet.command(worker_id, command)

    async def list_workers(self) -> list[WorkerView]:
        """Registered executors with their skills, capacity, status and (for local ones) running count."""
        out = []
        lives = {r.id: r.data for r in await self.storage.list(WORKER_LIVE, limit=100_000)}
        for rec in await self.storage.list(WORKER, limit=10_000):
            d = rec.data
            live = lives.get(rec.id)
            local = self.workers.get(rec.id)
            out.append(
                WorkerView(
                    rec.id,
                    d["skills"],
                    d["capacity"],
                    d["kind"],
                    rec.status or "",
                    local.running if local is not None else 0,
                    live["last_seen"] if live is not None else d["last_seen"],
                    d.get("info", {}),
                )
            )
        return out
