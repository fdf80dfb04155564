"""Running in-process steps: the executor loop takes job steps, runs their handlers under a heartbeat,
and commits each handler's decision together with the step's ack.

Owns the step leases of running handlers and the executor's tasks (its slots are counted in the core, whose
commit leases new steps straight to this instance). It must not decide what an action means (the
:class:`~podium.engine.planner.ActionPlanner` plans it) nor touch task records.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import traceback
from typing import Any

from podium.engine.context import ActionFactory
from podium.engine.core import MAX_CONFLICT_RETRIES, RUNNABLE, EngineCore, Plan
from podium.engine.definition import JobDefinition
from podium.engine.errors import ActionError
from podium.engine.files import JobFiles
from podium.engine.keys import HEARTBEAT_TIMER, JOB, STEPS_QUEUE
from podium.engine.models import JobStatus
from podium.engine.planner import ActionPlanner, Fail, MissingParam, context, inject
from podium.engine.registry import Registry
from podium.engine.transitions import Transitions
from podium.errors import ConflictError, LeaseLostError
from podium.log import bind_ids
from podium.store.base import Ack, Lease

__all__ = ["Executor"]

log = logging.getLogger("podium.engine")


class Executor:
    """Takes and runs job steps (see the module docstring)."""

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
        self.held: dict[str, Lease] = {}  # step leases of running handlers (kept alive by the heartbeat)
        self.files: JobFiles | None = None  # set by the engine: a job's files on S3 for ``task_files``
        self._heartbeat_armed = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the loop that takes steps nobody runs yet."""
        self._task = asyncio.get_running_loop().create_task(self.run(), name="podium-executor")

    async def stop(self) -> None:
        """Stop taking steps (running handlers go on: see :meth:`drain`)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def drain(self, grace_s: float) -> None:
        """Let running handlers finish for ``grace_s``; cancel the rest, which give their steps back."""
        steps = self.core.steps
        if steps:
            _, pending = await asyncio.wait(set(steps), timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    async def run(self) -> None:
        """Take steps nobody runs yet: those enqueued while every slot was busy, those of another instance
        that died (their leases expired), those given back. Wakes when this instance enqueues or gives back
        a step, when another instance does (the store's wake-up of the steps queue: Redis pub/sub,
        PostgreSQL ``NOTIFY``), at the next lease expiry, or every ``EXECUTOR_POLL_WAIT_S``."""
        core = self.core
        storage = self.storage
        while not core.stopping:
            free = core.free_slots()
            if free <= 0:
                core.slot_freed.clear()
                await core.slot_freed.wait()
                continue
            core.step_wake.clear()
            # Watch before looking, so a step another instance enqueues after the look still wakes us.
            watch = storage.watch(STEPS_QUEUE)
            watch.add_done_callback(lambda _: core.step_wake.set())
            core.reserved += free  # so that steps committed meanwhile do not also claim these slots
            try:
                take = asyncio.ensure_future(
                    self.storage.take_now(
                        [STEPS_QUEUE], owner=core.instance_id, lease_s=self.config.JOB_LEASE_S, limit=free
                    )
                )
                try:
                    leases = await asyncio.shield(take)
                except asyncio.CancelledError:
                    # stop() came during the take, which may still commit (SQLite runs it on a thread):
                    # give back what it took, or those steps would wait out JOB_LEASE_S on every instance
                    with contextlib.suppress(Exception):
                        for lease in await take:
                            await self.storage.nack(lease)
                    raise
                finally:
                    core.reserved -= free
                if not leases:
                    wait = self.config.EXECUTOR_POLL_WAIT_S
                    due = await self.storage.next_due([STEPS_QUEUE])
                    if due is not None:
                        wait = min(wait, max(0.0, due - self.clock.now()))
                    with contextlib.suppress(TimeoutError):
                        await self.clock.wait_for(core.step_wake.wait(), wait)
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("taking job steps failed")
                await self.clock.sleep(0.5)
                continue
            finally:
                storage.unwatch(STEPS_QUEUE, watch)
            for lease in leases:
                self.spawn(lease)

    def spawn(self, lease: Lease) -> None:
        """Run the step ``lease`` holds as a task of this executor (one slot)."""
        task = asyncio.get_running_loop().create_task(self._run_step(lease))
        self.core.steps.add(task)
        task.add_done_callback(self._step_done)

    def _step_done(self, task: asyncio.Task[None]) -> None:
        self.core.steps.discard(task)
        self.core.slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("job step crashed", exc_info=task.exception())

    async def _release(self, lease: Lease) -> None:
        with contextlib.suppress(LeaseLostError):
            await self.storage.apply(Ack(lease))

    async def _run_step(self, lease: Lease) -> None:
        """Run one step holding ``lease``; a heartbeat extends the lease while the handler runs, and a
        step cancelled by ``stop()`` gives its lease back so another instance runs it at once."""
        self.held[lease.id] = lease
        if not self._heartbeat_armed:
            self._heartbeat_armed = True
            self.core.timers.schedule(HEARTBEAT_TIMER, self.clock.now() + self.config.JOB_LEASE_S / 3)
        try:
            await self._run_step_body(lease)
        except asyncio.CancelledError:
            held = self.held.get(lease.id, lease)
            with contextlib.suppress(Exception):
                await self.storage.nack(held)
            raise
        finally:
            self.held.pop(lease.id, None)

    async def heartbeat(self) -> None:
        """Extend the step leases of handlers that have used a third of ``JOB_LEASE_S``."""
        lease_s = self.config.JOB_LEASE_S
        now = self.clock.now()
        for lease_id, lease in list(self.held.items()):
            if lease.expires_at - now < lease_s * 2 / 3:
                try:
                    fresh = await self.storage.extend(lease, lease_s)
                except LeaseLostError:
                    log.warning("job step lease lost while its handler ran", extra={"job_id": lease_id})
                    continue
                if lease_id in self.held:
                    self.held[lease_id] = fresh
        if self.held and not self.core.stopping:
            self.core.timers.schedule(HEARTBEAT_TIMER, self.clock.now() + lease_s / 3)
        else:
            self._heartbeat_armed = False

    async def _run_step_body(self, lease: Lease) -> None:
        job_id, step = lease.payload["job_id"], lease.payload["step"]
        core = self.core
        rec = await core.load_job(job_id)
        if rec is not None and (rec.data["step"] != step or rec.status not in RUNNABLE):
            rec = await core.load_job(job_id, fresh=True)  # never drop a step on a cached record
        if rec is None or rec.data["step"] != step or rec.status not in RUNNABLE:
            await self._release(lease)  # a stale step (the job moved on, or was cancelled)
            return
        d = rec.data
        definition = self.registry.definition(d["blueprint"])
        error: dict[str, Any] | None = None
        state = d["state"]
        if definition is None:
            actions, ctx = ActionFactory(job_id), None
            error = {
                "code": "BLUEPRINT_NOT_FOUND",
                "message": f"blueprint {d['blueprint']!r} is not registered",
            }
        else:
            actions, ctx = context(job_id, d, definition)
            if step > self.config.MAX_TRANSITIONS_PER_JOB:
                error = {
                    "code": "MAX_TRANSITIONS",
                    "message": f"more than {self.config.MAX_TRANSITIONS_PER_JOB} transitions: a loop in the blueprint?",
                }
            else:
                handler = definition.find_spec(state, ctx, aggregate=bool(d.get("aggregate")))
                if handler is None:
                    error = {
                        "code": "NO_HANDLER",
                        "message": f"no handler of {definition.name!r} fits state {state!r} (no condition matched)",
                    }
                else:
                    files = self.files
                    if (
                        files is not None
                        and files.enabled
                        and any(n == "task_files" for n, _ in handler.params)
                    ):
                        ctx = ctx._replace(task_files=files.for_job(job_id))
                    try:
                        with bind_ids(job_id=ctx.job_id):  # the handler's own log lines name the job
                            result = handler.fn(**inject(handler, ctx))
                            if inspect.isawaitable(result):
                                await result
                    except MissingParam as exc:
                        error = {
                            "code": "MISSING_PARAMETER",
                            "message": f"state {state!r}: handler parameter {exc.args[0]!r} is not in "
                            f"state_history or initial_data and has no default",
                        }
                    except ActionError as exc:
                        error = {"code": "ACTION_ERROR", "message": str(exc)}
                    except Exception as exc:
                        error = {
                            "code": "HANDLER_ERROR",
                            "message": f"{type(exc).__name__}: {exc}",
                            "traceback": traceback.format_exc(limit=8),
                        }
        agg: dict[str, Any]
        if ctx is None:
            sh, initial, agg = dict(d["state_history"]), dict(d["initial_data"]), {}
        else:
            sh, initial, agg = ctx.state_history, ctx.initial_data, ctx.aggregation_results or {}
        if actions.context_updates:
            initial.update(actions.context_updates)
        await self._commit_step(lease, job_id, step, definition, state, sh, initial, agg, actions, error)

    async def _commit_step(
        self,
        lease: Lease,
        job_id: str,
        step: int,
        definition: JobDefinition | None,
        state: str,
        sh: dict[str, Any],
        initial: dict[str, Any],
        agg: dict[str, Any],
        actions: ActionFactory,
        error: dict[str, Any] | None,
    ) -> None:
        core, planner, tr = self.core, self.planner, self.transitions
        for _ in range(MAX_CONFLICT_RETRIES):
            rec = await core.load_job(job_id)
            if rec is None or rec.data["step"] != step or rec.status not in RUNNABLE:
                rec = await core.load_job(job_id, fresh=True)
            if rec is None or rec.data["step"] != step or rec.status not in RUNNABLE:
                await self._release(lease)
                return
            plan = Plan()
            plan.ops.append(Ack(lease))
            new = dict(rec.data)
            new["state_history"], new["initial_data"] = sh, initial
            if agg or "aggregation_results" in new:
                new["aggregation_results"] = agg
            try:
                if error is None and definition is not None:
                    error = planner.check_events(plan, definition, job_id, state, actions)
                if error is not None or definition is None:
                    new["error"] = error
                    tr.terminal_ops(plan, rec, new, JobStatus.FAILED, await planner.parent_of(new))
                else:
                    await planner.plan_action(plan, rec, new, definition, actions)
            except Fail as exc:
                plan = Plan()
                plan.ops.append(Ack(lease))
                new["error"] = exc.error
                tr.terminal_ops(plan, rec, new, exc.status, await planner.parent_of(new))
            try:
                await core.commit(plan)
                return
            except LeaseLostError:
                log.warning("job step lease lost; another runner owns it", extra={"job_id": job_id})
                return
            except ConflictError as exc:
                core.forget([exc.id])
                if exc.kind == JOB and exc.id == job_id:
                    fresh = await core.load_job(job_id, fresh=True)
                    if fresh is None or fresh.data["step"] != step or fresh.status not in RUNNABLE:
                        await self._release(lease)
                        return
                continue
        log.error("job step kept conflicting; giving it back", extra={"job_id": job_id})
        with contextlib.suppress(LeaseLostError):
            await self.storage.nack(lease)
        core.step_wake.set()
