"""In-process workers: async functions per task type, fed through the same engine calls remote workers use.

::

    worker = InProcessWorker("local-1", capacity=8)

    @worker.skill("resize")
    async def resize(params, progress):
        await progress(50, "half way")
        return {"status": "success", "data": {"size": params["w"] * 2}}

    engine.add_worker(worker)

A skill's parameters are injected by name: ``params``, ``task`` (the :class:`~podium.engine.models.Task`),
``task_id``, ``job_id``, ``attempt`` and ``progress`` (``await progress(pct, message)``). It returns
``{"status", "data", "error"}`` (Avtomatika's shape), a plain dict (success with that data) or ``None``.
Raising :class:`TaskError` reports a coded error; any other exception reports ``INTERNAL_ERROR``
(retried). When the engine cancels the task, the skill's coroutine is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from podium.engine.models import EngineEvent, Task
from podium.log import bind_ids
from podium.store.base import Lease

if TYPE_CHECKING:
    from podium.engine.engine import OrchestratorEngine

__all__ = ["InProcessWorker", "TaskError"]

log = logging.getLogger("podium.engine.workers")

Skill = Callable[..., Any]
_INJECTABLE = {"params", "task", "task_id", "job_id", "attempt", "progress"}


class TaskError(Exception):
    """Raise from a skill to report an error with a code (``TRANSIENT_ERROR``, ``PERMANENT_ERROR``, ...)."""

    def __init__(
        self, code: str, message: str = "", *, status: str = "failure", data: dict[str, Any] | None = None
    ):
        super().__init__(message or code)
        self.code, self.message, self.status, self.data = code, message or code, status, data


class InProcessWorker:
    """A worker living in the engine's process; see the module docstring."""

    def __init__(
        self,
        worker_id: str,
        *,
        capacity: int = 10,
        skills: Mapping[str, Skill] | None = None,
        poll_wait_s: float = 30.0,
        lease_s: float | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.capacity = capacity
        self.poll_wait_s = poll_wait_s
        self.lease_s = lease_s
        """How long a task stays leased to this worker without news (default ``Config.TASK_LEASE_S``)."""
        self._skills: dict[str, tuple[Skill, tuple[str, ...]]] = {}
        for name, fn in (skills or {}).items():
            self.add_skill(name, fn)
        self._engine: OrchestratorEngine | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._inflight: dict[tuple[str, int], asyncio.Task[None]] = {}  # (task id, attempt) -> runner
        self._tasks: dict[tuple[str, int], Task] = {}
        self._reserved = 0  # slots promised to tasks the engine is committing to this worker
        self._slot = asyncio.Event()
        self._unsubscribe: Callable[[], None] | None = None
        self._stopping = False
        self._starting = False

    @property
    def skills(self) -> list[str]:
        """The task types this worker executes."""
        return list(self._skills)

    @property
    def running(self) -> int:
        """Tasks executing now."""
        return len(self._inflight)

    def free_slots(self) -> int:
        """Slots free for one more task (0 while stopped or stopping)."""
        if self._stopping or self._loop_task is None:
            return 0
        return self.capacity - len(self._inflight) - self._reserved

    def reserve(self) -> None:
        """Hold a slot for a task the engine is about to hand over (see :meth:`deliver`)."""
        self._reserved += 1

    def unreserve(self) -> None:
        """Give back a slot held by :meth:`reserve`."""
        self._reserved -= 1
        self._slot.set()

    def deliver(self, task: Task, lease: Lease | None = None) -> None:
        """Run a task the engine leased straight to this worker (after the lease was committed)."""
        engine = self._engine
        assert engine is not None
        runner = asyncio.get_running_loop().create_task(self._execute(engine, task))
        key = (task.task_id, task.attempt)
        self._inflight[key] = runner
        self._tasks[key] = task
        runner.add_done_callback(functools.partial(self._done, key))

    def add_skill(self, name: str, fn: Skill) -> None:
        """Execute tasks of type ``name`` with ``fn``."""
        params = tuple(inspect.signature(fn).parameters)
        unknown = [p for p in params if p not in _INJECTABLE]
        if unknown:
            raise TypeError(f"skill {name!r}: cannot inject {unknown}; choose from {sorted(_INJECTABLE)}")
        self._skills[name] = (fn, params)

    def skill(self, name: str | None = None) -> Callable[[Skill], Skill]:
        """Decorator form of :meth:`add_skill` (the name defaults to the function's)."""

        def decorator(fn: Skill) -> Skill:
            self.add_skill(name or fn.__name__, fn)
            return fn

        return decorator

    def attach(self, engine: OrchestratorEngine) -> None:
        """Bind to an engine (done by ``engine.add_worker``)."""
        self._engine = engine

    async def start(self) -> None:
        """Register in the engine's worker registry and start taking tasks. Idempotent."""
        engine = self._engine
        if engine is None:
            raise RuntimeError("add the worker to an engine first: engine.add_worker(worker)")
        if self._starting or (self._loop_task is not None and not self._loop_task.done()):
            return  # started, or being started by another caller (add_worker schedules a start)
        self._starting = True
        self._stopping = False
        try:
            await engine.register_worker_record(self.worker_id, self.skills, capacity=self.capacity)
        finally:
            self._starting = False
        self._unsubscribe = engine.subscribe(self._on_event, types=("task_cancelled", "task_timeout"))
        self._loop_task = asyncio.get_running_loop().create_task(
            self._loop(), name=f"worker-{self.worker_id}"
        )
        engine.dispatch.attach(self)

    async def stop(self, *, grace_s: float = 30.0) -> None:
        """Stop taking tasks; let running ones finish for ``grace_s``, then cancel them and give their leases
        back so the tasks are offered again at once. Idempotent."""
        self._stopping = True
        if self._engine is not None:
            self._engine.dispatch.detach(self)
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._inflight:
            tasks = dict(self._tasks)
            runners = {runner: key for key, runner in self._inflight.items()}
            _, pending = await asyncio.wait(set(runners), timeout=grace_s)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                engine = self._engine
                assert engine is not None
                for t in pending:
                    given = tasks.get(runners[t])
                    if given is not None:
                        await engine.dispatch.give_back(given)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
            if self._engine is not None:  # it was started: the registry says it is gone
                with contextlib.suppress(Exception):
                    await self._engine.heartbeat_worker(self.worker_id, status="offline")

    def _on_event(self, event: EngineEvent) -> None:
        if event.type in ("task_cancelled", "task_timeout") and self._inflight:
            attempt = event.data.get("attempt")
            for (task_id, n), runner in list(self._inflight.items()):
                if task_id == event.task_id and (attempt is None or n == attempt):
                    runner.cancel()

    async def _loop(self) -> None:
        engine = self._engine
        assert engine is not None
        skills = self.skills
        while not self._stopping:
            free = self.capacity - len(self._inflight) - self._reserved
            if free <= 0:
                self._slot.clear()
                await self._slot.wait()
                continue
            try:
                tasks = await engine.take_tasks(
                    self.worker_id, skills, limit=free, wait_s=self.poll_wait_s, lease_s=self.lease_s
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("taking tasks failed", extra={"worker_id": self.worker_id})
                await engine.clock.sleep(0.5)
                continue
            for t in tasks:
                self.deliver(t)

    def _done(self, key: tuple[str, int], _fut: object = None) -> None:
        self._inflight.pop(key, None)
        self._tasks.pop(key, None)
        self._slot.set()

    @staticmethod
    def _arguments(engine: OrchestratorEngine, task: Task, params: tuple[str, ...]) -> dict[str, Any]:
        """The skill's parameters by name (only those it declares are built)."""
        args: dict[str, Any] = {}
        for name in params:
            if name == "progress":

                async def progress(pct: float, message: str | None = None) -> bool:
                    return await engine.report_progress(task.task_id, pct, message)

                args[name] = progress
            elif name == "task":
                args[name] = task
            else:  # params, task_id, job_id, attempt: fields of the task
                args[name] = getattr(task, name)
        return args

    async def _execute(self, engine: OrchestratorEngine, task: Task) -> None:
        fn, params = self._skills[task.task_type]
        status, data, error = "success", None, None
        try:
            with bind_ids(job_id=task.job_id, task_id=task.task_id, worker_id=self.worker_id):
                out = fn(**self._arguments(engine, task, params)) if params else fn()
                if type(out) is not dict and inspect.isawaitable(out):
                    out = await out
            if isinstance(out, Mapping) and "status" in out:
                status = str(out["status"])
                data = out.get("data")
                error = out.get("error")
            elif isinstance(out, Mapping):
                data = dict(out)
        except asyncio.CancelledError:
            if self._stopping:
                raise
            return  # the engine withdrew the task: nothing to report
        except TaskError as exc:
            status, data, error = exc.status, exc.data, {"code": exc.code, "message": exc.message}
        except Exception as exc:
            log.exception("skill failed", extra={"task_id": task.task_id, "worker_id": self.worker_id})
            status, error = "failure", {"code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}: {exc}"}
        try:
            await engine.complete_task(
                task.task_id, status, data, error, token=task.token, worker_id=self.worker_id
            )
        except Exception:
            log.exception("submitting a result failed", extra={"task_id": task.task_id})
