"""Which worker a task goes to: Avtomatika's ``dispatch_strategy`` and ``max_cost``, as a pure decision.

:func:`choose_worker` takes the task type, the strategy, the cost limit and a list of :class:`Candidate`
(the remote workers that can run the task, with their cost for it, their load and reputation) and returns
the worker to lease the task to, ``None`` to leave it in the task type's shared queue (podium's default:
whichever worker asks first takes it), or :class:`NoWorker` when none may take it (the job is then
quarantined, as Avtomatika does). :class:`WorkerDirectory` holds the candidates the engine knows from
registrations and heartbeats. Nothing here does I/O.

Strategies (Avtomatika 1.0b30's dispatcher), each among the hot workers when any is a candidate:
``default`` (and ``fastest``: the shared queue; with a ``max_cost``, the cheapest, then the best
reputation), ``round_robin``,
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

from podium.engine.requirements import requirements_mismatch
from podium.wire.jsonschema import schema_violation

__all__ = [
    "STRATEGIES",
    "Candidate",
    "NoWorker",
    "TaskNeeds",
    "WorkerState",
    "alive",
    "choose_worker",
    "decide",
    "effective_load",
    "hot_skill_names",
    "loaded",
    "note_dispatch",
    "reputation_after",
    "screen",
    "skill_mismatch",
    "steal_from",
    "trusted",
]

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
    constrained: bool = False,
) -> str | NoWorker | None:
    """The worker id to lease the task to, ``None`` for the shared queue, or :class:`NoWorker`.

    ``turn`` is the round-robin counter for ``task_type`` (the caller advances it); ``soft_limit`` is
    ``DISPATCHER_SOFT_LIMIT`` for ``overflow``. A ``constrained`` task (``resource_requirements``,
    ``skill_version``, ``skill_type``: not every worker of the type may run it) never goes to the shared
    queue: ``default`` then picks as it does with a ``max_cost``, and no candidate at all is
    :class:`NoWorker` (Avtomatika's message).
    """
    if strategy not in STRATEGIES:
        strategy = "default"
    if strategy in ("default", "fastest") and max_cost is None and not constrained:
        return None
    pool = list(candidates)
    if max_cost is not None:
        pool = [c for c in pool if c.cost <= max_cost]
        if not pool:
            return NoWorker(f"No worker meets the maximum cost ({max_cost}) for task '{task_type}'")
    if not pool:
        if constrained:
            return NoWorker(f"No suitable workers for task type '{task_type}'")
        return None  # nobody known yet: the shared queue, for whoever registers
    # Hot cache: workers with the skill's model loaded are the pool when there are any (Avtomatika narrows
    # to them for every strategy; here after the cost limit, so a hot worker over it does not block a cold one)
    pool = [c for c in pool if c.hot] or pool
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
    # default with a cost limit (or constrained): the cheapest, then the best reputation
    cheapest = min(c.cost for c in pool)
    return max((c for c in pool if c.cost == cheapest), key=lambda c: c.reputation).worker_id


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


# --- what a worker told the registry, and the checks made of it (Avtomatika's dispatcher) --------------

BUSY_STATUSES = frozenset({"busy", "full"})
"""Statuses of a worker that takes no new task now (its targeted tasks may be stolen)."""
GONE_STATUSES = frozenset({"offline", "draining"})
"""Statuses of a worker that is no dispatch candidate at all."""
STANDARD_STATUSES = frozenset({"success", "failure", "cancelled"})
"""Result statuses every worker supports; a skill's ``output_statuses`` is checked for the others only."""


@dataclass(frozen=True, slots=True)
class WorkerState:
    """A remote worker as the registry holds it: what it registered and what its heartbeats reported.

    ``skills`` maps each skill name to its declared ``SkillInfo`` (``input_schema``, ``version``, ``type``,
    ``output_statuses``); ``load`` is the number of tasks its last heartbeat (at ``reported_at``) said it
    held, ``dispatched`` the times tasks were dispatched to it since (the optimistic increment).
    """

    worker_id: str
    skills: Mapping[str, Mapping[str, Any]]
    costs: Mapping[str, float] = field(default_factory=dict)
    capacity: int = 1
    reputation: float = 1.0
    status: str = "idle"
    last_seen: float = 0.0
    load: int = 0
    reported_at: float = 0.0
    dispatched: tuple[float, ...] = ()
    hot: frozenset[str] = frozenset()
    worker_type: str = "generic"
    registered_at: float = 0.0
    extras: Mapping[str, Any] = field(default_factory=dict)
    """What it registered for ``resource_requirements``: ``resources``, ``installed_software``,
    ``installed_artifacts``, ``extra`` (its ``capabilities.extra``)."""


def effective_load(w: WorkerState) -> int:
    """The tasks ``w`` holds as far as the dispatcher knows: what its last heartbeat reported plus every
    task dispatched to it since (a dispatch counts until the next heartbeat reports; Avtomatika's
    optimistic load increment)."""
    return w.load + sum(1 for t in w.dispatched if t >= w.reported_at)


def note_dispatch(dispatched: Sequence[float], reported_at: float, now: float) -> tuple[float, ...]:
    """The dispatch times to keep after one more dispatch at ``now``: those a heartbeat already reported
    (before ``reported_at``) are dropped."""
    return (*(t for t in dispatched if t >= reported_at), now)


def hot_skill_names(hot: Iterable[Any]) -> frozenset[str]:
    """The names in a worker's ``hot_skills`` (plain names, or ``{"name": ...}`` as some workers send)."""
    out = set()
    for h in hot:
        name = h if isinstance(h, str) else h.get("name") if isinstance(h, Mapping) else None
        if isinstance(name, str):
            out.add(name)
    return frozenset(out)


def alive(w: WorkerState, now: float, ttl_s: float) -> bool:
    """Heard from within ``ttl_s`` and neither offline nor draining."""
    return now - w.last_seen <= ttl_s and w.status not in GONE_STATUSES


def trusted(reputation: float, threshold: float) -> bool:
    """At or above ``REPUTATION_MIN_THRESHOLD`` (Avtomatika's trusted guard)."""
    return reputation >= threshold


def skill_mismatch(
    skill: Mapping[str, Any] | None,
    task_type: str,
    params: Mapping[str, Any] | None,
    *,
    version: str | None = None,
    skill_type: str | None = None,
    transitions: Iterable[str] = (),
) -> str | None:
    """Why a worker's declared skill cannot run this task, or ``None`` if it can (Avtomatika's compliance
    check, its reason strings): the skill exists, its ``version``/``type`` are the ones asked for, the
    task's ``params`` validate against its ``input_schema`` (deep: nested objects, types, required,
    items, enums, bounds; :mod:`podium.wire.jsonschema`), and it can answer every custom status the
    transitions name (``output_statuses``)."""
    if skill is None:
        return f"skill_not_found: {task_type}"
    if (skill_type is not None and skill.get("type") != skill_type) or (
        version is not None and skill.get("version") != version
    ):
        return f"skill_contract_mismatch: {task_type} (expected version {version}, type {skill_type})"
    schema = skill.get("input_schema")
    if params and isinstance(schema, Mapping) and schema:
        violation = schema_violation(dict(params), dict(schema), root_name="params")
        if violation is not None:
            return f"schema_validation_failed: {violation}"
    statuses = skill.get("output_statuses")
    if statuses:
        missing = sorted(set(transitions) - STANDARD_STATUSES - set(statuses))
        if missing:
            return f"unsupported_output_statuses: {missing}"
    return None


@dataclass(frozen=True, slots=True)
class TaskNeeds:
    """What a task asks of a worker: its type and params, and Avtomatika's optional contract fields."""

    task_type: str
    params: Mapping[str, Any] = field(default_factory=dict)
    version: str | None = None
    skill_type: str | None = None
    transitions: tuple[str, ...] = ()
    requirements: Mapping[str, Any] = field(default_factory=dict)
    """Avtomatika's ``resource_requirements`` (see :mod:`podium.engine.requirements`)."""


def screen(
    needs: TaskNeeds,
    workers: Iterable[WorkerState],
    now: float,
    *,
    ttl_s: float,
    min_reputation: float = 0.0,
    max_candidates: int = 50,
) -> tuple[list[Candidate], dict[str, int]]:
    """The live workers that may run the task, as candidates (cost, effective load, reputation, hot), and
    how many were turned away for each reason. A worker without the skill is not counted as turned away;
    below ``min_reputation`` counts as ``reputation_below_threshold``. At most ``max_candidates``
    (``DISPATCHER_MAX_CANDIDATES``) are returned."""
    out: list[Candidate] = []
    rejected: dict[str, int] = {}
    t = needs.task_type
    for w in workers:
        skill = w.skills.get(t)
        if skill is None or not alive(w, now, ttl_s):
            continue
        reason = skill_mismatch(
            skill,
            t,
            needs.params,
            version=needs.version,
            skill_type=needs.skill_type,
            transitions=needs.transitions,
        )
        if reason is None and needs.requirements:
            reason = requirements_mismatch(w.extras, skill, needs.requirements)
        if reason is None and not trusted(w.reputation, min_reputation):
            reason = "reputation_below_threshold"
        if reason is not None:
            key = reason.split(":", 1)[0]
            rejected[key] = rejected.get(key, 0) + 1
            continue
        out.append(
            Candidate(w.worker_id, w.costs.get(t, math.inf), effective_load(w), w.reputation, t in w.hot)
        )
        if len(out) >= max_candidates:
            break
    return out, rejected


def decide(
    needs: TaskNeeds,
    strategy: str,
    workers: Iterable[WorkerState],
    now: float,
    *,
    ttl_s: float,
    max_cost: float | None = None,
    turn: int = 0,
    soft_limit: int = 3,
    min_reputation: float = 0.0,
    max_candidates: int = 50,
) -> str | NoWorker | None:
    """:func:`screen` then :func:`choose_worker`. Live workers with the skill that all fail the checks
    give :class:`NoWorker` naming the reasons (Avtomatika quarantines the job); no live worker with the
    skill at all leaves the task in the shared queue for whoever registers (unless ``max_cost`` is set)."""
    pool, rejected = screen(
        needs, workers, now, ttl_s=ttl_s, min_reputation=min_reputation, max_candidates=max_candidates
    )
    if not pool and rejected:
        t = needs.task_type
        if set(rejected) == {"reputation_below_threshold"}:
            return NoWorker(
                f"No suitable workers meeting the reputation threshold ({min_reputation}) for task '{t}'"
            )
        return NoWorker(f"No worker satisfies the requirements for task '{t}'. Reasons: {rejected}")
    constrained = bool(needs.requirements or needs.version is not None or needs.skill_type is not None)
    return choose_worker(
        needs.task_type,
        strategy,
        pool,
        max_cost=max_cost,
        turn=turn,
        soft_limit=soft_limit,
        constrained=constrained,
    )


def loaded(w: WorkerState, now: float, ttl_s: float) -> bool:
    """A worker with tasks it will not start soon: busy or full (its own report), more tasks than its
    capacity counting dispatches since its heartbeat (those queued for it wait), or gone (offline,
    draining, not heard from within ``ttl_s``)."""
    return not alive(w, now, ttl_s) or w.status in BUSY_STATUSES or effective_load(w) > max(1, w.capacity)


def steal_from(
    thief: str, skills: Iterable[str], workers: Iterable[WorkerState], now: float, *, ttl_s: float
) -> list[tuple[str, str]]:
    """Work stealing: the ``(worker, skill)`` queues an idle worker ``thief`` may take tasks from -- those
    targeted at other workers that are :func:`loaded`, for the skills the thief has, the most loaded
    first. The take itself is the store's atomic lease on the queue item (one taker wins)."""
    mine = set(skills)
    victims = [
        w for w in workers if w.worker_id != thief and mine.intersection(w.skills) and loaded(w, now, ttl_s)
    ]
    victims.sort(key=lambda w: effective_load(w) - w.capacity, reverse=True)
    return [(w.worker_id, s) for w in victims for s in sorted(mine.intersection(w.skills))]
