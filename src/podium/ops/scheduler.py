"""The native scheduler: runs the schedules of ``schedules.toml`` on an engine, once per occurrence.

How an occurrence runs exactly once, with any number of instances on one store:

- One instance owns the schedules: :class:`~podium.store.FencedOwnership` over the store lock
  :data:`SCHEDULER_LOCK`. Only the owner arms timers; an instance that loses the lock disarms them, and the
  one that takes it over catches up from the store.
- Each schedule has a record (kind :data:`SCHEDULE_KIND`, id its name) holding the last occurrence run. An
  occurrence's job is created with an id derived from the schedule's name and the occurrence's time
  (:func:`podium.ids.derived_ulid_str`: its idempotency key) in the same store write as the record's new
  ``last`` (a compare-and-set on its version). A second writer of the same occurrence, e.g. a deposed owner
  whose lock expired mid-flight, conflicts on both and writes nothing.
- Deadlines are entries of the engine's one :class:`~podium.engine.TimerQueue` (keys ``s:<name>``, routed
  here by :meth:`OrchestratorEngine.route_timers`), on the engine's clock: a
  :class:`~podium.clock.ManualClock` moves a simulated week in no real time.

Occurrences missed while no instance ran follow each schedule's :class:`~podium.ops.schedules.MissedPolicy`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from podium.engine.engine import SCHEDULE_TIMER, OrchestratorEngine
from podium.engine.errors import BlueprintNotFoundError
from podium.errors import ConfigError, ConflictError
from podium.ids import derived_ulid_str
from podium.ops.schedules import MissedPolicy, Schedule, load_schedules
from podium.store import FencedOwnership, Op, Put, Record

if TYPE_CHECKING:
    from podium.workcell import WorkcellEngine

__all__ = ["SCHEDULER_LOCK", "SCHEDULE_KIND", "Scheduler", "WorkflowSubmit", "workcell_submit"]

log = logging.getLogger("podium.ops.scheduler")

SCHEDULE_KIND = "schedule"
"""Record kind of a schedule's state (id: the schedule's name)."""
SCHEDULER_LOCK = "ops:scheduler"
"""The store lock whose holder runs the schedules."""

WorkflowSubmit = Callable[[str, dict[str, Any], str, Sequence[Op]], Awaitable[str]]
"""Start a workcell workflow: ``(workflow, inputs, run_id, extra_ops) -> run_id``; ``extra_ops`` must join the
run's first write, and a second start with the same ``run_id`` must raise
:class:`~podium.errors.ConflictError`."""


def workcell_submit(workcell: WorkcellEngine) -> WorkflowSubmit:
    """Start runs of a workcell's stored workflow definitions (``workflow`` = the definition's id) for a
    :class:`Scheduler` on the workcell's engine (``workcell.jobs``); the run id is the occurrence's key."""

    async def submit(workflow: str, inputs: dict[str, Any], run_id: str, extra_ops: Sequence[Op]) -> str:
        run = await workcell.submit(workflow, json_inputs=inputs, workflow_id=run_id, extra_ops=extra_ops)
        return run.workflow_id

    return submit


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class Scheduler:
    """Runs ``schedules`` on ``engine`` (see the module docstring). ``submit_workflow`` starts the runs of
    ``workflow`` schedules (a workcell's); without it such schedules are a :class:`ConfigError`, as is a
    schedule naming a blueprint the engine does not know. ``lock_ttl_s`` defaults to the engine's
    ``RECOVERY_LOCK_TTL_S``."""

    def __init__(
        self,
        engine: OrchestratorEngine,
        schedules: Sequence[Schedule],
        *,
        submit_workflow: WorkflowSubmit | None = None,
        lock_ttl_s: float | None = None,
    ) -> None:
        self.engine = engine
        self.store = engine.storage
        self.clock = engine.clock
        self.submit_workflow = submit_workflow
        self.schedules: dict[str, Schedule] = {}
        for s in schedules:
            self._check(s)
            self.schedules[s.name] = s
        self.triggered: dict[str, int] = {}
        """Jobs this instance created, per blueprint (``workflow:<name>`` for workflows)."""
        self.failed: dict[str, int] = {}
        """Occurrences whose job could not be created (bad input, unknown workflow), per target."""
        self._armed: dict[str, float] = {}
        self.ownership = FencedOwnership(
            engine.storage,
            SCHEDULER_LOCK,
            engine.instance_id,
            ttl_s=lock_ttl_s or engine.config.RECOVERY_LOCK_TTL_S,
            clock=engine.clock,
            on_acquired=self._take_over,
            on_lost=self._step_down,
            label="scheduler",
        )
        engine.route_timers(SCHEDULE_TIMER, self._on_timer)

    @classmethod
    def from_file(
        cls, engine: OrchestratorEngine, path: str | Path, *, submit_workflow: WorkflowSubmit | None = None
    ) -> Scheduler:
        """The scheduler of a ``schedules.toml`` (zone: the file's ``TZ``, else the engine's ``Config.TZ``);
        :class:`ConfigError` as ``file:line: what is wrong``."""
        return cls(engine, load_schedules(path, tz=engine.config.TZ), submit_workflow=submit_workflow)

    def _check(self, s: Schedule) -> None:
        if s.name in self.schedules:
            raise ConfigError(f"{s.where}: schedule '{s.name}' is defined twice")
        if s.blueprint is not None:
            try:
                self.engine.get_definition(s.blueprint)
            except BlueprintNotFoundError:
                known = ", ".join(sorted(self.engine.blueprints)) or "none"
                raise ConfigError(
                    f"{s.where}: schedule '{s.name}': blueprint '{s.blueprint}' is not registered "
                    f"(registered: {known})"
                ) from None
        elif self.submit_workflow is None:
            raise ConfigError(
                f"{s.where}: schedule '{s.name}' runs workflow '{s.workflow}', but no workcell serves here"
            )

    @property
    def is_owner(self) -> bool:
        """Whether this instance runs the schedules now."""
        return self.ownership.is_owner

    async def start(self) -> None:
        """Take the schedules if no other instance has them (catching up on missed occurrences), then keep
        checking the lock. Nothing happens without schedules."""
        if not self.schedules:
            return
        await self.ownership.check()
        self.ownership.start()

    async def stop(self) -> None:
        """Disarm the timers and give the lock back (another instance takes over). Idempotent."""
        await self.ownership.stop(release=True)
        await self._step_down()

    # --- ownership ---------------------------------------------------------------------------------

    async def _take_over(self, token: int) -> None:
        for s in list(self.schedules.values()):
            try:
                await self._catch_up(s)
            except Exception:
                log.exception("schedule %r: catching up failed", s.name)

    async def _step_down(self) -> None:
        for name in list(self._armed):
            self.engine.timers.cancel(f"{SCHEDULE_TIMER}{name}")
        self._armed.clear()

    async def _record(self, s: Schedule) -> Record:
        """The schedule's record, written first with ``anchor`` (now) when the schedule is new."""
        for _ in range(8):
            rec = await self.store.get(SCHEDULE_KIND, s.name)
            if rec is not None:
                return rec
            data = {"anchor": self.clock.now(), "last": None, "job_id": None}
            try:
                written: Record = (await self.store.apply(Put(SCHEDULE_KIND, s.name, data, 0)))[0]
                return written
            except ConflictError:
                continue
        raise ConflictError(SCHEDULE_KIND, s.name, 0, None)

    def _missed(self, s: Schedule, rec: Record, now: float) -> list[float]:
        """The occurrences due by ``now`` that have not run, after the schedule's missed policy. One due less
        than the lock's TTL ago is on time, not missed (a take-over cannot come sooner)."""
        anchor, last = rec.data["anchor"], rec.data.get("last")
        after = last if last is not None else anchor - 1.0  # an interval schedule first runs at its anchor
        due = s.due(after, now, anchor)
        if s.missed is MissedPolicy.ALL:
            return due
        if s.missed is MissedPolicy.ONCE:
            return due[-1:]
        return [t for t in due[-1:] if now - t < self.ownership.ttl_s]

    async def _catch_up(self, s: Schedule) -> None:
        """Run what the policy says of the missed occurrences, then arm the next one."""
        rec = await self._record(s)
        now = self.clock.now()
        for occurrence in self._missed(s, rec, now):
            if not self.is_owner:
                return
            rec = await self._fire(s, occurrence, rec)
        self._arm(s, rec, now)

    def _arm(self, s: Schedule, rec: Record, now: float) -> None:
        last = rec.data.get("last")
        nxt = s.next_after(max(now, last if last is not None else now), rec.data["anchor"])
        self._armed[s.name] = nxt
        self.engine.timers.schedule(f"{SCHEDULE_TIMER}{s.name}", nxt, nxt)

    async def _on_timer(self, key: str, occurrence: float) -> None:
        s = self.schedules.get(key[len(SCHEDULE_TIMER) :])
        if s is None or not self.is_owner:
            return
        self._armed.pop(s.name, None)
        rec = await self._record(s)
        last = rec.data.get("last")
        if last is None or last < occurrence:
            rec = await self._fire(s, occurrence, rec)
        # Fell behind while running (a stalled loop, a suspended host): the policy decides, as after downtime.
        now = self.clock.now()
        for missed in self._missed(s, rec, now):
            rec = await self._fire(s, missed, rec)
        self._arm(s, rec, now)

    # --- one occurrence ----------------------------------------------------------------------------

    def job_id(self, s: Schedule, occurrence: float) -> str:
        """The id of the job of ``s`` at ``occurrence`` (the same on every instance)."""
        return derived_ulid_str(round(occurrence * 1000), f"schedule:{s.name}@{occurrence!r}")

    async def _fire(self, s: Schedule, occurrence: float, rec: Record) -> Record:
        """Create the occurrence's job and move the record on in one write; returns the record as it is now."""
        job_id = self.job_id(s, occurrence)
        data = {
            **rec.data,
            "last": occurrence,
            "job_id": job_id,
            "error": None,
            "token": self.ownership.token,
        }
        put = Put(SCHEDULE_KIND, s.name, data, rec.version)
        target = s.blueprint if s.blueprint is not None else f"workflow:{s.workflow}"
        try:
            if s.blueprint is not None:
                await self.engine.create_job(
                    s.blueprint,
                    dict(s.initial_data),
                    dispatch_timeout=s.dispatch_timeout,
                    result_timeout=s.result_timeout,
                    job_id=job_id,
                    extra_ops=[put],
                )
            else:
                assert self.submit_workflow is not None and s.workflow is not None
                await self.submit_workflow(s.workflow, dict(s.initial_data), job_id, [put])
        except ConflictError:
            # Another writer ran this occurrence (its job exists) or moved the record on: the store says.
            fresh = await self.store.get(SCHEDULE_KIND, s.name)
            return fresh if fresh is not None else rec
        except Exception as exc:
            # A job that cannot be created (input the blueprint refuses) would fail at every retry: the
            # occurrence is recorded as failed and the schedule goes on.
            log.error("schedule %r: the job of %s could not be created: %s", s.name, _iso(occurrence), exc)
            self.failed[target] = self.failed.get(target, 0) + 1
            data.update(job_id=None, error=str(exc))
            try:
                written: Record = (await self.store.apply(Put(SCHEDULE_KIND, s.name, data, rec.version)))[0]
                return written
            except ConflictError:
                fresh = await self.store.get(SCHEDULE_KIND, s.name)
                return fresh if fresh is not None else rec
        log.info(
            "schedule %r: started job %s for %s", s.name, job_id, _iso(occurrence), extra={"job_id": job_id}
        )
        self.triggered[target] = self.triggered.get(target, 0) + 1
        fresh = await self.store.get(SCHEDULE_KIND, s.name)
        return fresh if fresh is not None else rec

    # --- listing -----------------------------------------------------------------------------------

    async def describe(self) -> list[dict[str, Any]]:
        """Every schedule with its trigger, last run and next run time (as the store and the timers say)."""
        now = self.clock.now()
        records = {r.id: r for r in await self.store.list(SCHEDULE_KIND, limit=10_000)}
        out = []
        for s in self.schedules.values():
            rec = records.get(s.name)
            data: Mapping[str, Any] = rec.data if rec is not None else {}
            last = data.get("last")
            nxt = self._armed.get(s.name)
            if nxt is None:
                anchor = data.get("anchor", now)
                nxt = s.next_after(max(now, last if last is not None else now), anchor)
            out.append(
                {
                    "name": s.name,
                    "blueprint": s.blueprint,
                    "workflow": s.workflow,
                    "trigger": s.trigger.describe(),
                    "timezone": getattr(s.trigger, "tz", None) and str(getattr(s.trigger, "tz", "")),
                    "missed": str(s.missed),
                    "next_run_at": _iso(nxt),
                    "next_run_ts": nxt,
                    "last_run_at": _iso(last),
                    "last_job_id": data.get("job_id"),
                    "last_error": data.get("error"),
                }
            )
        return out
