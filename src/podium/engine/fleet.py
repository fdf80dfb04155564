"""The remote workers every engine instance on one store shares: registrations, heartbeats, reputation.

Record kinds (:mod:`podium.engine.keys`), so that each write touches only what changed, every change made
under the record's version (a conflict re-reads and retries):

- ``worker`` -- the registration (skills with their contracts, costs, capacity, resources), written once,
  durably;
- ``worker_live`` -- the last heartbeat (status, reported load, hot skills, ``last_seen``), the times tasks
  were dispatched to the worker since (the optimistic load increment) and the commands waiting for its next
  heartbeat. Heartbeats and dispatch counts are written with ``durable=False``: no flush on SQLite, because
  the next heartbeat repeats it and a lost one only makes the worker look older; a command is durable;
- ``worker_rep`` -- the reputation (so two instances scoring at once both count), kept when the worker
  registers again;
- ``dispatch_turn`` -- the round-robin counter of a task type.

Any instance reads them back (:meth:`WorkerRegistry.snapshot`, cached for ``DISPATCHER_CACHE_TTL_S``;
the changes an instance makes itself show in its cache at once). The decisions are the pure functions of
:mod:`podium.engine.strategy`; this module does the I/O around them. It must not decide which worker gets
a task (that is :func:`podium.engine.strategy.decide`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from podium.engine.core import EngineCore
from podium.engine.keys import DISPATCH_TURN, WORKER, WORKER_LIVE, WORKER_REP, worker_queue
from podium.engine.strategy import (
    NoWorker,
    TaskNeeds,
    WorkerState,
    decide,
    hot_skill_names,
    note_dispatch,
    reputation_after,
    steal_from,
    trusted,
)
from podium.errors import ConflictError
from podium.store.base import Delete, Put, Record

__all__ = ["WorkerRegistry"]

_CAS_TRIES = 8
_EXTRAS = ("resources", "installed_software", "installed_artifacts", "extra")


class WorkerRegistry:
    """Remote workers in the store (see the module docstring)."""

    def __init__(self, core: EngineCore) -> None:
        self.storage = core.storage
        self.config = core.config
        self.clock = core.clock
        self.instance_id = core.instance_id
        self._cache: dict[str, WorkerState] = {}
        self._cached_at = -math.inf
        self.turns: dict[str, int] = {}
        """Round-robin counters per task type, used only when the store's is contended past retrying."""

    @property
    def ttl_s(self) -> float:
        """How long a worker stays a candidate without a heartbeat (Avtomatika: twice
        ``WORKER_HEALTH_CHECK_INTERVAL_SECONDS``)."""
        return float(self.config.WORKER_HEALTH_CHECK_INTERVAL_SECONDS) * 2

    # --- writes -------------------------------------------------------------------------------------

    def registration_ops(self, worker_id: str, info: Mapping[str, Any], registered_at: float) -> list[Put]:
        """The heartbeat record a registration starts with (the registration record is the caller's)."""
        now = self.clock.now()
        live = {
            "registered_at": registered_at,
            "status": "idle",
            "last_seen": now,
            "load": 0,
            "reported_at": now,
            "dispatched": [],
            "hot_skills": sorted(hot_skill_names(info.get("hot_skills") or ())),
            "instance": self.instance_id,
        }
        return [Put(WORKER_LIVE, worker_id, live)]

    async def registered(self, worker_id: str, data: Mapping[str, Any]) -> None:
        """After a registration committed: give the worker a reputation record if it has none (an existing one
        is kept: registering again does not wash a bad reputation clean) and show it in this cache."""
        rep = await self.storage.get(WORKER_REP, worker_id)
        if rep is None:
            try:
                rep = await self.storage.put(WORKER_REP, worker_id, {"reputation": 1.0}, expected_version=0)
            except ConflictError:
                rep = await self.storage.get(WORKER_REP, worker_id)
        live = await self.storage.get(WORKER_LIVE, worker_id)
        self._cache[worker_id] = _state(worker_id, data, live, rep)

    async def _change_live(
        self, worker_id: str, change: Callable[[dict[str, Any]], bool], *, durable: bool = False
    ) -> dict[str, Any] | None:
        """Change the worker's heartbeat record under its version (a conflict re-reads and retries): ``change``
        edits a copy of its data and says whether to write it. The data as changed, or ``None`` when the
        worker has no heartbeat record. Contended past retrying, a ``durable`` change raises the
        :class:`ConflictError`; any other is dropped (a heartbeat or a count the next one makes good)."""
        for attempt in range(_CAS_TRIES):
            rec = await self.storage.get(WORKER_LIVE, worker_id)
            if rec is None:
                return None
            d = dict(rec.data)
            if not change(d):
                return d
            try:
                await self.storage.apply(Put(WORKER_LIVE, worker_id, d, rec.version), durable=durable)
            except ConflictError:
                if durable and attempt == _CAS_TRIES - 1:
                    raise
                continue
            cached = self._cache.get(worker_id)
            if cached is not None:
                self._cache[worker_id] = _with_live(cached, d)
            return d
        return d

    async def heartbeat(
        self, worker_id: str, *, status: str, load: int | None, hot_skills: Sequence[str] | None
    ) -> tuple[list[dict[str, Any]], float] | None:
        """Record a heartbeat (``durable=False``); the commands queued for the worker by any instance
        (:meth:`command`), handed over now, and when it last registered. ``None`` if the worker has no
        heartbeat record (not a registered remote worker). ``None`` for ``load`` or ``hot_skills`` keeps what
        was reported before."""
        commands: list[dict[str, Any]] = []

        def report(d: dict[str, Any]) -> bool:
            now = self.clock.now()
            d.update(status=status, last_seen=now, instance=self.instance_id)
            if load is not None:  # the report replaces the dispatches counted since the last one
                d.update(load=load, reported_at=now, dispatched=[])
            if hot_skills is not None:
                d["hot_skills"] = sorted(hot_skill_names(hot_skills))
            commands[:] = d.pop("commands", None) or []  # under the version: one queued meanwhile is kept
            return True

        d = await self._change_live(worker_id, report)
        return None if d is None else (commands, float(d.get("registered_at", 0.0)))

    async def command(self, worker_id: str, command: Mapping[str, Any]) -> bool:
        """Queue a command (``{"command": "drain"}``, ...) for the worker's next heartbeat, whichever instance
        it reaches; ``False`` if the worker has no heartbeat record. Written durably: an order is not lost."""

        def queue(d: dict[str, Any]) -> bool:
            d["commands"] = [*(d.get("commands") or ()), dict(command)]
            return True

        return await self._change_live(worker_id, queue, durable=True) is not None

    async def offline(self, worker_id: str) -> None:
        """The worker left: no longer a candidate anywhere (its reputation stays; what is queued for it may
        be stolen)."""
        await self.storage.apply(Delete(WORKER_LIVE, worker_id))
        cached = self._cache.get(worker_id)
        if cached is not None:
            self._cache[worker_id] = _replace(cached, status="offline")

    async def count_dispatch(self, worker_id: str) -> None:
        """Count one task dispatched to the worker against its load until its next heartbeat reports."""

        def count(d: dict[str, Any]) -> bool:
            dispatched = d.get("dispatched") or ()
            d["dispatched"] = list(note_dispatch(dispatched, d.get("reported_at", 0.0), self.clock.now()))
            return True

        await self._change_live(worker_id, count)

    async def result_in(self, worker_id: str) -> None:
        """A result from the worker: the oldest task counted against its load since its heartbeat no longer
        counts (Avtomatika's decrement on a result). Nothing is read or written when this instance's view
        (:meth:`snapshot`) counts no dispatch for it."""
        view = (await self.snapshot()).get(worker_id)
        if view is None or not view.dispatched:
            return

        def uncount(d: dict[str, Any]) -> bool:
            if not d.get("dispatched"):
                return False
            d["dispatched"] = list(d["dispatched"])[1:]
            return True

        await self._change_live(worker_id, uncount)

    async def score(self, worker_id: str, outcome: str | None) -> float | None:
        """Count one result of the worker (:meth:`result_in`) and score it
        (:func:`podium.engine.strategy.reputation_after` with ``REPUTATION_*``; ``None``: a result that says
        nothing of the worker, such as a transient error) under the record's version; the new reputation, or
        ``None`` for a worker without one. A success of a worker already at 1.0 in this instance's view
        changes nothing and writes nothing: the common case costs no store call (but the view's refresh,
        once per ``DISPATCHER_CACHE_TTL_S``)."""
        await self.result_in(worker_id)
        view = self._cache.get(worker_id)
        if outcome is None or (outcome == "success" and view is not None and view.reputation >= 1.0):
            return view.reputation if view is not None else None
        c = self.config
        rates = {
            "reward": c.REPUTATION_REWARD_SUCCESS,
            "penalty_failure": c.REPUTATION_PENALTY_TASK_FAILURE,
            "penalty_contract": c.REPUTATION_PENALTY_CONTRACT_VIOLATION,
        }
        for _ in range(_CAS_TRIES):
            rec = await self.storage.get(WORKER_REP, worker_id)
            if rec is None:
                return None
            before = float(rec.data.get("reputation", 1.0))
            after = reputation_after(before, outcome, **rates)
            if after != before:
                try:
                    await self.storage.put(
                        WORKER_REP, worker_id, {"reputation": after}, expected_version=rec.version
                    )
                except ConflictError:
                    continue
            view = self._cache.get(worker_id)
            if view is not None:
                self._cache[worker_id] = _replace(view, reputation=after)
            return after
        return None

    # --- reads --------------------------------------------------------------------------------------

    async def snapshot(self) -> dict[str, WorkerState]:
        """Every registered remote worker, read from the store at most once per ``DISPATCHER_CACHE_TTL_S``
        (0: every time). Those that left are in it as ``offline``: no dispatch candidates, but the tasks
        still queued for them are there for idle workers to steal."""
        now = self.clock.monotonic()
        if now - self._cached_at < self.config.DISPATCHER_CACHE_TTL_S:
            return self._cache
        regs = await self.storage.list(WORKER, group="remote", limit=100_000)
        lives = {r.id: r for r in await self.storage.list(WORKER_LIVE, limit=100_000)}
        reps = {r.id: r for r in await self.storage.list(WORKER_REP, limit=100_000)}
        self._cache = {r.id: _state(r.id, r.data, lives.get(r.id), reps.get(r.id)) for r in regs}
        self._cached_at = now
        return self._cache

    async def get(self, worker_id: str) -> WorkerState | None:
        """One remote worker, read from the store now (its registration, last heartbeat and reputation)."""
        reg = await self.storage.get(WORKER, worker_id)
        if reg is None or reg.group != "remote":
            return None
        live = await self.storage.get(WORKER_LIVE, worker_id)
        rep = await self.storage.get(WORKER_REP, worker_id)
        state = _state(worker_id, reg.data, live, rep)
        if live is not None and reg.status == "online":
            self._cache[worker_id] = state
        return state

    async def choose(self, spec: Mapping[str, Any]) -> str | NoWorker | None:
        """The worker a task spec's ``dispatch_strategy``/``max_cost`` picks (see
        :func:`podium.engine.strategy.decide`); the chosen one's load counts the task at once."""
        c = self.config
        task_type = spec["task_type"]
        strategy = spec.get("dispatch_strategy", "default")
        needs = TaskNeeds(
            task_type,
            spec.get("params") or {},
            spec.get("skill_version"),
            spec.get("skill_type"),
            tuple(spec.get("transitions") or ()),
            spec.get("resource_requirements") or {},
        )
        turn = await self._next_turn(task_type) if strategy == "round_robin" else 0
        workers = (await self.snapshot()).values()
        choice = decide(
            needs,
            strategy,
            workers,
            self.clock.now(),
            ttl_s=self.ttl_s,
            max_cost=spec.get("max_cost"),
            turn=turn,
            soft_limit=c.DISPATCHER_SOFT_LIMIT,
            min_reputation=c.REPUTATION_MIN_THRESHOLD,
            max_candidates=c.DISPATCHER_MAX_CANDIDATES,
        )
        if isinstance(choice, str):
            await self.count_dispatch(choice)
        return choice

    async def _next_turn(self, task_type: str) -> int:
        """The round-robin turn for ``task_type``, from one counter in the store that every instance advances
        (Avtomatika's cluster-wide counter); under heavy contention, this instance's own."""
        for _ in range(_CAS_TRIES):
            rec = await self.storage.get(DISPATCH_TURN, task_type)
            n = int(rec.data.get("n", 0)) if rec is not None else 0
            op = Put(DISPATCH_TURN, task_type, {"n": n + 1}, rec.version if rec is not None else 0)
            try:
                await self.storage.apply(op, durable=False)
            except ConflictError:
                continue
            return n
        n = self.turns.get(task_type, 0)
        self.turns[task_type] = n + 1
        return n

    async def steal_queues(self, worker_id: str, skills: Iterable[str]) -> list[str]:
        """The targeted queues an idle ``worker_id`` may steal from (``WORK_STEALING_ENABLED``; see
        :func:`podium.engine.strategy.steal_from`); empty when no other remote worker shares a skill, and
        for a remote worker below ``REPUTATION_MIN_THRESHOLD`` (one the strategies pass over does not take
        tasks meant for others either)."""
        if not self.config.WORK_STEALING_ENABLED:
            return []
        workers = await self.snapshot()
        if not workers:
            return []
        thief = workers.get(worker_id)
        if thief is not None and not trusted(thief.reputation, self.config.REPUTATION_MIN_THRESHOLD):
            return []
        pairs = steal_from(worker_id, skills, workers.values(), self.clock.now(), ttl_s=self.ttl_s)
        return [worker_queue(w, s) for w, s in pairs]


def _replace(w: WorkerState, **changes: Any) -> WorkerState:
    fields = {name: getattr(w, name) for name in WorkerState.__slots__}
    fields.update(changes)
    return WorkerState(**fields)


def _with_live(w: WorkerState, live: Mapping[str, Any]) -> WorkerState:
    return _replace(
        w,
        status=live.get("status", "idle"),
        last_seen=float(live.get("last_seen", 0.0)),
        load=int(live.get("load", 0)),
        reported_at=float(live.get("reported_at", 0.0)),
        dispatched=tuple(live.get("dispatched") or ()),
        hot=frozenset(live.get("hot_skills") or ()),
    )


def _state(worker_id: str, reg: Mapping[str, Any], live: Record | None, rep: Record | None) -> WorkerState:
    info = reg.get("info") or {}
    skill_infos = info.get("skill_infos") or {}
    skills = {name: skill_infos.get(name) or {"name": name} for name in reg.get("skills") or ()}
    costs = {
        k: float(v)
        for k, v in (info.get("cost_per_skill") or {}).items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    w = WorkerState(
        worker_id,
        skills,
        costs,
        capacity=int(reg.get("capacity") or 1),
        reputation=float(rep.data.get("reputation", 1.0)) if rep is not None else 1.0,
        status="offline",
        last_seen=float(reg.get("last_seen", 0.0)),
        hot=hot_skill_names(info.get("hot_skills") or ()),
        worker_type=str(info.get("worker_type") or "generic"),
        registered_at=float(reg.get("registered_at", 0.0)),
        extras={k: info[k] for k in _EXTRAS if info.get(k)},
    )
    return _with_live(w, live.data) if live is not None else w
