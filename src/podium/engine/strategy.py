"""Which worker a task goes to: Avtomatika's ``dispatch_strategy`` and ``max_cost``, as a pure decision.

:func:`choose_worker` takes the task type, the strategy, the cost limit and a list of :class:`Candidate`
(the remote workers that can run the task, with their cost for it, their load and reputation) and returns
the worker to lease the task to, ``None`` to leave it in the task type's shared queue (podium's default:
whichever worker asks first takes it), or :class:`NoWorker` when none may take it (the job is then
quarantined, as Avtomatika does). :class:`WorkerDirectory` holds the candidates the engine knows from
registrations and heartbeats. Nothing here does I/O.

Strategies (Avtomatika 1.0b30's dispatcher): ``default`` (and ``fastest``: the shared queue; with a
``max_cost``, hot workers first, then the cheapest, then the best reputation), ``round_robin``,
``least_connections``, ``cheapest``, ``best_value`` (cost / reputation), ``overflow`` (the cheapest worker
whose load is under the soft limit, else the least loaded). An unknown name is treated as ``default``, as
Avtomatika does. A worker without a declared cost for the task costs infinity: it never fits a
``max_cost``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["STRATEGIES", "Candidate", "NoWorker", "WorkerDirectory", "choose_worker"]

STRATEGIES = ("default", "fastest", "round_robin", "least_connections", "cheapest", "best_value", "overflow")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A worker that can run the task: its cost for this task type, tasks it holds, reputation, hot or not."""

    worker_id: str
    cost: float = math.inf
    load: int = 0
    reputation: float = 1.0
    hot: bool = False


@dataclass(frozen=True, slots=True)
class NoWorker:
    """No worker may take the task; ``reason`` says why (Avtomatika's message where it has one)."""

    reason: str


def choose_worker(
    task_type: str,
    strategy: str,
    candidates: Sequence[Candidate],
    *,
    max_cost: float | None = None,
    turn: int = 0,
    soft_limit: int = 3,
) -> str | NoWorker | None:
    """The worker id to lease the task to, ``None`` for the shared queue, or :class:`NoWorker`.

    ``turn`` is the round-robin counter for ``task_type`` (the caller advances it); ``soft_limit`` is
    ``DISPATCHER_SOFT_LIMIT`` for ``overflow``.
    """
    if strategy not in STRATEGIES:
        strategy = "default"
    if strategy in ("default", "fastest") and max_cost is None:
        return None
    pool = list(candidates)
    if max_cost is not None:
        pool = [c for c in pool if c.cost <= max_cost]
        if not pool:
            return NoWorker(f"No worker meets the maximum cost ({max_cost}) for task '{task_type}'")
    if not pool:
        return None  # nobody known yet: the shared queue, for whoever registers
    if strategy == "round_robin":
        return pool[turn % len(pool)].worker_id
    if strategy == "least_connections":
        return min(pool, key=lambda c: c.load).worker_id
    if strategy == "cheapest":
        return min(pool, key=lambda c: c.cost).worker_id
    if strategy == "best_value":
        return min(pool, key=_value).worker_id
    if strategy == "overflow":
        by_cost = sorted(pool, key=lambda c: c.cost)
        for c in by_cost:
            if c.load < soft_limit:
                return c.worker_id
        return min(by_cost, key=lambda c: c.load).worker_id
    # default with a cost limit: hot workers first, then the cheapest, then the best reputation
    hot = [c for c in pool if c.hot] or pool
    cheapest = min(c.cost for c in hot)
    return max((c for c in hot if c.cost == cheapest), key=lambda c: c.reputation).worker_id


OUTCOMES = ("success", "failure", "contract_violation")
"""What a worker's result says of it: done, failed for good (``PERMANENT_ERROR``), or broke its contract."""


def reputation_after(
    reputation: float,
    outcome: str,
    *,
    reward: float = 0.001,
    penalty_failure: float = 0.05,
    penalty_contract: float = 0.2,
) -> float:
    """A worker's reputation after one result (Avtomatika's ``REPUTATION_*``), kept within 0..1: a success
    adds ``reward``, a permanent failure takes ``penalty_failure``, a contract violation ``penalty_contract``."""
    if outcome == "success":
        return min(1.0, reputation + reward)
    if outcome == "failure":
        return max(0.0, reputation - penalty_failure)
    if outcome == "contract_violation":
        return max(0.0, reputation - penalty_contract)
    raise ValueError(f"unknown outcome {outcome!r}: one of {', '.join(OUTCOMES)}")


def _value(c: Candidate) -> float:
    return math.inf if c.reputation == 0 else c.cost / c.reputation


@dataclass(slots=True)
class _Known:
    skills: frozenset[str]
    costs: dict[str, float]
    load: int = 0
    reputation: float = 1.0
    hot: frozenset[str] = frozenset()


@dataclass
class WorkerDirectory:
    """The remote workers this engine knows (from registrations and heartbeats), as strategy candidates."""

    workers: dict[str, _Known] = field(default_factory=dict)
    turns: dict[str, int] = field(default_factory=dict)

    def register(
        self,
        worker_id: str,
        skills: Iterable[str],
        *,
        cost_per_skill: Mapping[str, Any] | None = None,
        hot_skills: Iterable[str] = (),
        reputation: float = 1.0,
    ) -> None:
        """Record (or replace) a worker; costs that are not numbers are left out (unknown: infinite)."""
        costs = {
            k: float(v)
            for k, v in (cost_per_skill or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        self.workers[worker_id] = _Known(frozenset(skills), costs, 0, reputation, frozenset(hot_skills))

    def heartbeat(
        self, worker_id: str, *, load: int | None = None, hot_skills: Iterable[str] | None = None
    ) -> None:
        """A worker's reported load (tasks it holds) and hot skills."""
        known = self.workers.get(worker_id)
        if known is None:
            return
        if load is not None:
            known.load = load
        if hot_skills is not None:
            known.hot = frozenset(hot_skills)

    def record(self, worker_id: str, outcome: str, **rates: float) -> float | None:
        """Score one result of the worker (see :func:`reputation_after`); its new reputation, or ``None`` for a
        worker this engine does not know."""
        known = self.workers.get(worker_id)
        if known is None:
            return None
        known.reputation = reputation_after(known.reputation, outcome, **rates)
        return known.reputation

    def reputation(self, worker_id: str) -> float | None:
        """The worker's reputation (1.0 when it registered), ``None`` for one this engine does not know."""
        known = self.workers.get(worker_id)
        return None if known is None else known.reputation

    def forget(self, worker_id: str) -> None:
        """The worker left (deregistered or offline)."""
        self.workers.pop(worker_id, None)

    def candidates(self, task_type: str, *, min_reputation: float = 0.0) -> list[Candidate]:
        """The known workers that run ``task_type`` with at least ``min_reputation``, in registration order."""
        return [
            Candidate(wid, k.costs.get(task_type, math.inf), k.load, k.reputation, task_type in k.hot)
            for wid, k in self.workers.items()
            if task_type in k.skills and k.reputation >= min_reputation
        ]

    def choose(
        self,
        task_type: str,
        strategy: str,
        max_cost: float | None,
        *,
        soft_limit: int = 3,
        min_reputation: float = 0.0,
    ) -> str | NoWorker | None:
        """:func:`choose_worker` over the known workers; the chosen one's load counts the task at once
        (until its next heartbeat says otherwise), and round-robin moves on."""
        turn = self.turns.get(task_type, 0)
        choice = choose_worker(
            task_type,
            strategy,
            self.candidates(task_type, min_reputation=min_reputation),
            max_cost=max_cost,
            turn=turn,
            soft_limit=soft_limit,
        )
        if isinstance(choice, str):
            self.workers[choice].load += 1
            if strategy == "round_robin":
                self.turns[task_type] = turn + 1
        return choice
