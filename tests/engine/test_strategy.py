"""choose_worker: Avtomatika's dispatch strategies and max_cost as one pure decision, table-driven."""

from __future__ import annotations

import math

import pytest

from podium.engine.strategy import (
    Candidate,
    NoWorker,
    TaskNeeds,
    WorkerState,
    alive,
    choose_worker,
    decide,
    effective_load,
    hot_skill_names,
    loaded,
    note_dispatch,
    reputation_after,
    screen,
    skill_mismatch,
    steal_from,
)

CHEAP = Candidate("cheap", cost=1.0, load=5, reputation=0.5)
MID = Candidate("mid", cost=2.0, load=0, reputation=1.0)
DEAR = Candidate("dear", cost=5.0, load=2, reputation=1.0)
HOT = Candidate("hot", cost=5.0, load=2, reputation=1.0, hot=True)
UNPRICED = Candidate("unpriced", load=1)
ALL = [CHEAP, MID, DEAR, UNPRICED]

CASES = [
    # (strategy, candidates, max_cost, turn, soft_limit, expected)
    ("default", ALL, None, 0, 3, None),  # podium's default: the shared queue, whoever asks first
    ("fastest", ALL, None, 0, 3, None),
    ("no-such-strategy", ALL, None, 0, 3, None),  # Avtomatika treats unknown names as default
    ("default", [*ALL, HOT], 10.0, 0, 3, "hot"),  # with a cost limit: hot workers first
    ("default", ALL, 10.0, 0, 3, "cheap"),
    ("default", [CHEAP, MID], 10.0, 0, 3, "cheap"),  # then the cheapest
    ("default", [MID, Candidate("mid2", cost=2.0, reputation=2.0)], 10.0, 0, 3, "mid2"),  # then reputation
    ("cheapest", ALL, None, 0, 3, "cheap"),
    ("least_connections", ALL, None, 0, 3, "mid"),
    ("round_robin", ALL, None, 0, 3, "cheap"),
    ("round_robin", ALL, None, 1, 3, "mid"),
    ("round_robin", ALL, None, 5, 3, "mid"),  # wraps around
    ("best_value", [*ALL, Candidate("good", cost=3.0, reputation=3.0)], None, 0, 3, "good"),  # 3/3 < 1/0.5
    ("best_value", [CHEAP, DEAR], None, 0, 3, "cheap"),
    ("overflow", ALL, None, 0, 3, "mid"),  # cheap is over the soft limit: the next cheapest under it
    ("overflow", ALL, None, 0, 10, "cheap"),
    ("overflow", [CHEAP, Candidate("busy", cost=2.0, load=4)], None, 0, 3, "busy"),  # all over: least loaded
    ("cheapest", ALL, 1.5, 0, 3, "cheap"),
    ("least_connections", ALL, 1.5, 0, 3, "cheap"),  # the cost limit filters before the strategy picks
    ("round_robin", ALL, 2.0, 1, 3, "mid"),
    ("cheapest", [], None, 0, 3, None),  # nobody known yet: the shared queue
    # hot cache: every strategy picks among the workers with the model loaded, when there are any
    ("cheapest", [*ALL, HOT], None, 0, 3, "hot"),
    ("least_connections", [*ALL, HOT], None, 0, 3, "hot"),
    ("round_robin", [*ALL, HOT, Candidate("hot2", hot=True)], None, 1, 3, "hot2"),
    ("cheapest", [*ALL, HOT], 2.0, 0, 3, "cheap"),  # a hot worker over the cost limit: the cold ones
]


@pytest.mark.parametrize(("strategy", "candidates", "max_cost", "turn", "soft_limit", "expected"), CASES)
def test_choose_worker(
    strategy: str,
    candidates: list[Candidate],
    max_cost: float | None,
    turn: int,
    soft_limit: int,
    expected: str | None,
) -> None:
    choice = choose_worker(
        "render", strategy, candidates, max_cost=max_cost, turn=turn, soft_limit=soft_limit
    )
    assert choice == expected


@pytest.mark.parametrize("strategy", ["default", "cheapest", "round_robin", "least_connections", "overflow"])
def test_no_worker_within_max_cost(strategy: str) -> None:
    choice = choose_worker("render", strategy, ALL, max_cost=0.5)
    assert choice == NoWorker("No worker meets the maximum cost (0.5) for task 'render'")
    # a cost limit with nobody known at all cannot be met either
    assert isinstance(choose_worker("render", strategy, [], max_cost=0.5), NoWorker)


def test_unpriced_workers_cost_infinity() -> None:
    assert UNPRICED.cost == math.inf
    assert choose_worker("render", "cheapest", [UNPRICED, DEAR]) == "dear"
    assert isinstance(choose_worker("render", "cheapest", [UNPRICED], max_cost=1e9), NoWorker)


@pytest.mark.parametrize(
    ("before", "outcome", "after"),
    [
        (1.0, "success", 1.0),  # capped
        (0.5, "success", 0.501),
        (1.0, "failure", 0.95),
        (1.0, "contract_violation", 0.8),
        (0.1, "contract_violation", 0.0),  # floored
    ],
)
def test_reputation_after_one_result(before: float, outcome: str, after: float) -> None:
    assert reputation_after(before, outcome) == pytest.approx(after)


def test_reputation_rejects_an_unknown_outcome() -> None:
    with pytest.raises(ValueError, match="unknown outcome"):
        reputation_after(1.0, "meh")


# --- deep input-schema match (Avtomatika's compliance check) ------------------------------------------

SCHEMA = {
    "type": "object",
    "required": ["prompt", "size"],
    "properties": {
        "prompt": {"type": "string", "minLength": 1},
        "size": {
            "type": "object",
            "required": ["w", "h"],
            "properties": {"w": {"type": "integer", "minimum": 1}, "h": {"type": "integer"}},
            "additionalProperties": False,
        },
        "tags": {"type": "array", "items": {"type": "string"}},
        "mode": {"enum": ["fast", "best"]},
    },
}
SKILL = {
    "name": "render",
    "version": "2",
    "type": "gpu",
    "input_schema": SCHEMA,
    "output_statuses": ["retake"],
}
GOOD = {"prompt": "cat", "size": {"w": 2, "h": 3}}

MATCH_CASES = [
    # (skill, params, version, skill_type, transitions, expected reason or None)
    (SKILL, GOOD, None, None, (), None),
    (SKILL, {**GOOD, "tags": ["a", "b"], "mode": "fast"}, "2", "gpu", ("success", "retake"), None),
    (None, GOOD, None, None, (), "skill_not_found: render"),
    (SKILL, GOOD, "3", None, (), "skill_contract_mismatch: render (expected version 3, type None)"),
    (SKILL, GOOD, None, "cpu", (), "skill_contract_mismatch: render (expected version None, type cpu)"),
    (SKILL, {"prompt": "cat"}, None, None, (), "schema_validation_failed: params.size: field required"),
    (
        SKILL,
        {**GOOD, "size": {"w": 2}},
        None,
        None,
        (),
        "schema_validation_failed: params.size.h: field required",
    ),
    (
        SKILL,
        {**GOOD, "size": {"w": "2", "h": 3}},
        None,
        None,
        (),
        "schema_validation_failed: params.size.w: expected integer, got str",
    ),
    (
        SKILL,
        {**GOOD, "size": {"w": 0, "h": 3}},
        None,
        None,
        (),
        "schema_validation_failed: params.size.w: must be >= 1, got 0",
    ),
    (
        SKILL,
        {**GOOD, "size": {"w": 1, "h": 3, "d": 4}},
        None,
        None,
        (),
        "schema_validation_failed: params.size.d: unexpected field",
    ),
    (
        SKILL,
        {**GOOD, "tags": ["a", 1]},
        None,
        None,
        (),
        "schema_validation_failed: params.tags[1]: expected string, got int",
    ),
    (
        SKILL,
        {**GOOD, "mode": "slow"},
        None,
        None,
        (),
        "schema_validation_failed: params.mode: must be one of ['fast', 'best'], got 'slow'",
    ),
    (
        SKILL,
        GOOD,
        None,
        None,
        ("success", "failure", "cancelled"),
        None,
    ),  # standard statuses need no declaring
    (SKILL, GOOD, None, None, ("success", "blurry"), "unsupported_output_statuses: ['blurry']"),
    ({"name": "render"}, {"anything": 1}, None, None, ("blurry",), None),  # no schema, no statuses: no check
    (SKILL, {}, None, None, (), None),  # no params: nothing to check (Avtomatika checks only given params)
]


@pytest.mark.parametrize(("skill", "params", "version", "skill_type", "transitions", "expected"), MATCH_CASES)
def test_skill_mismatch(
    skill: dict | None,
    params: dict,
    version: str | None,
    skill_type: str | None,
    transitions: tuple,
    expected: str | None,
) -> None:
    reason = skill_mismatch(
        skill, "render", params, version=version, skill_type=skill_type, transitions=transitions
    )
    assert reason == expected


# --- optimistic load between heartbeats ----------------------------------------------------------------


def w(worker_id: str, **kw: object) -> WorkerState:
    """A live worker with the render skill (heard from at t=100 unless told)."""
    base: dict = {"skills": {"render": {"name": "render"}}, "last_seen": 100.0, "reported_at": 100.0}
    base.update(kw)
    return WorkerState(worker_id, **base)


LOAD_CASES = [
    # (reported load, reported_at, dispatch times, effective load)
    (0, 100.0, (), 0),
    (2, 100.0, (), 2),
    (0, 100.0, (101.0, 102.0), 2),  # two dispatched since the heartbeat: they count at once
    (1, 100.0, (99.0, 100.0, 101.0), 3),  # the one before the heartbeat is in its report already
    (3, 105.0, (101.0, 102.0), 3),  # a newer heartbeat reported them
]


@pytest.mark.parametrize(("load", "reported_at", "dispatched", "expected"), LOAD_CASES)
def test_effective_load(load: int, reported_at: float, dispatched: tuple, expected: int) -> None:
    assert effective_load(w("a", load=load, reported_at=reported_at, dispatched=dispatched)) == expected


@pytest.mark.parametrize(
    ("dispatched", "reported_at", "now", "expected"),
    [
        ((), 100.0, 101.0, (101.0,)),
        ((99.0, 100.5), 100.0, 101.0, (100.5, 101.0)),  # reported ones are dropped
        ((99.0, 99.5), 100.0, 100.0, (100.0,)),
    ],
)
def test_note_dispatch(dispatched: tuple, reported_at: float, now: float, expected: tuple) -> None:
    assert note_dispatch(dispatched, reported_at, now) == expected


def test_least_connections_counts_dispatches_until_the_heartbeat() -> None:
    # Given a, b idle at their last heartbeat; a was sent two tasks since, b one
    a = w("a", dispatched=(101.0, 102.0))
    b = w("b", dispatched=(101.0,))
    needs = TaskNeeds("render")
    assert decide(needs, "least_connections", [a, b], 103.0, ttl_s=60) == "b"
    # When b's heartbeat reports three tasks held, a is the less loaded one
    b = w("b", load=3, reported_at=103.0, dispatched=(101.0,))
    assert decide(needs, "least_connections", [a, b], 103.0, ttl_s=60) == "a"


# --- cost overflow past DISPATCHER_SOFT_LIMIT ------------------------------------------------------------


@pytest.mark.parametrize(
    ("cheap_load", "cheap_dispatched", "soft_limit", "expected"),
    [
        (0, (), 3, "cheap"),
        (2, (), 3, "cheap"),
        (2, (101.0,), 3, "mid"),  # the dispatch since the heartbeat takes it to the soft limit
        (3, (), 3, "mid"),
        (3, (), 4, "cheap"),
        (9, (), 3, "mid"),
    ],
)
def test_overflow_spills_to_the_pricier_worker(
    cheap_load: int, cheap_dispatched: tuple, soft_limit: int, expected: str
) -> None:
    cheap = w("cheap", costs={"render": 1.0}, load=cheap_load, dispatched=cheap_dispatched)
    mid = w("mid", costs={"render": 2.0}, load=1)
    dear = w("dear", costs={"render": 9.0})
    choice = decide(
        TaskNeeds("render"), "overflow", [dear, cheap, mid], 102.0, ttl_s=60, soft_limit=soft_limit
    )
    assert choice == expected


def test_overflow_with_all_over_the_limit_takes_the_least_loaded_within_max_cost() -> None:
    cheap = w("cheap", costs={"render": 1.0}, load=5)
    mid = w("mid", costs={"render": 2.0}, load=4)
    dear = w("dear", costs={"render": 9.0})
    assert decide(TaskNeeds("render"), "overflow", [cheap, mid, dear], 100.0, ttl_s=60, max_cost=3.0) == "mid"


# --- hot cache ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hot_a", "hot_b", "expected"),
    [
        ((), (), "a"),  # cheaper wins
        ((), ("render",), "b"),  # b has the model loaded: preferred over the cheaper a
        (("render",), ("render",), "a"),
        ((), ("other",), "a"),  # hot for another skill is not hot for this one
    ],
)
def test_default_prefers_hot_workers(hot_a: tuple, hot_b: tuple, expected: str) -> None:
    a = w("a", costs={"render": 1.0}, hot=frozenset(hot_a))
    b = w("b", costs={"render": 2.0}, hot=frozenset(hot_b))
    assert decide(TaskNeeds("render"), "default", [a, b], 100.0, ttl_s=60, max_cost=5.0) == expected


def test_hot_skill_names_accepts_names_and_skill_objects() -> None:
    assert hot_skill_names(["a", {"name": "b"}, {"x": 1}, 3]) == frozenset({"a", "b"})


# --- reputation threshold, liveness, schema in the decision ---------------------------------------------


@pytest.mark.parametrize(
    ("rep_a", "rep_b", "threshold", "expected"),
    [
        (1.0, 1.0, 0.3, "a"),
        (0.2, 1.0, 0.3, "b"),  # a is below the threshold: ignored
        (0.3, 1.0, 0.3, "a"),  # at the threshold: trusted
        (
            0.2,
            0.1,
            0.3,
            NoWorker("No suitable workers meeting the reputation threshold (0.3) for task 'render'"),
        ),
    ],
)
def test_reputation_threshold(rep_a: float, rep_b: float, threshold: float, expected: object) -> None:
    a = w("a", costs={"render": 1.0}, reputation=rep_a)
    b = w("b", costs={"render": 2.0}, reputation=rep_b)
    assert (
        decide(TaskNeeds("render"), "cheapest", [a, b], 100.0, ttl_s=60, min_reputation=threshold) == expected
    )


def test_schema_mismatch_passes_a_worker_over_and_quarantines_when_none_fits() -> None:
    strict = w("strict", skills={"render": SKILL}, costs={"render": 1.0})
    loose = w("loose", costs={"render": 5.0})
    bad = TaskNeeds("render", {"prompt": 3})
    assert decide(bad, "cheapest", [strict, loose], 100.0, ttl_s=60) == "loose"
    assert decide(TaskNeeds("render", GOOD), "cheapest", [strict, loose], 100.0, ttl_s=60) == "strict"
    assert decide(bad, "cheapest", [strict], 100.0, ttl_s=60) == NoWorker(
        "No worker satisfies the requirements for task 'render'. Reasons: {'schema_validation_failed': 1}"
    )
    pool, rejected = screen(bad, [strict, loose], 100.0, ttl_s=60)
    assert [c.worker_id for c in pool] == ["loose"] and rejected == {"schema_validation_failed": 1}


@pytest.mark.parametrize(
    ("last_seen", "status", "now", "expected"),
    [
        (100.0, "idle", 150.0, True),
        (100.0, "busy", 160.0, True),
        (100.0, "idle", 160.1, False),  # not heard from within the TTL
        (100.0, "offline", 100.0, False),
        (100.0, "draining", 100.0, False),
    ],
)
def test_alive(last_seen: float, status: str, now: float, expected: bool) -> None:
    assert alive(w("a", last_seen=last_seen, status=status), now, 60.0) is expected


def test_dead_workers_are_no_candidates_and_unknown_skills_use_the_shared_queue() -> None:
    dead = w("dead", costs={"render": 1.0}, last_seen=0.0)
    live = w("live", costs={"render": 2.0})
    assert decide(TaskNeeds("render"), "cheapest", [dead, live], 100.0, ttl_s=60) == "live"
    assert decide(TaskNeeds("render"), "cheapest", [dead], 100.0, ttl_s=60) is None
    assert decide(TaskNeeds("upscale"), "cheapest", [live], 100.0, ttl_s=60) is None


# --- work stealing --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("victim", "expected"),
    [
        (w("v", capacity=2, load=3), True),  # over capacity
        (w("v", capacity=2, load=2, dispatched=(101.0,)), True),  # over capacity counting a dispatch
        (w("v", capacity=2, load=1, dispatched=(101.0,)), False),  # a slot for it: it takes its task soon
        (w("v", capacity=2, load=2), False),  # at capacity, nothing queued for it as far as we know
        (w("v", capacity=2, load=1), False),  # has a free slot: it takes its own task soon
        (w("v", capacity=4, status="busy"), True),
        (w("v", capacity=4, status="full"), True),
        (w("v", capacity=4, last_seen=0.0), True),  # gone quiet: its queued tasks would wait
        (w("v", capacity=4, status="offline"), True),
    ],
)
def test_loaded(victim: WorkerState, expected: bool) -> None:
    assert loaded(victim, 102.0, 60.0) is expected


def test_steal_from_loaded_workers_sharing_a_skill_most_loaded_first() -> None:
    two = {"render": {"name": "render"}, "ocr": {"name": "ocr"}}
    workers = [
        w("thief", capacity=1),
        w("busy", capacity=1, load=2),
        w("busier", capacity=1, load=5, skills=two),
        w("free", capacity=3, load=1),  # not loaded
        w("other", capacity=1, load=9, skills={"ocr": {"name": "ocr"}}),  # no shared skill
    ]
    assert steal_from("thief", ["render"], workers, 102.0, ttl_s=60) == [
        ("busier", "render"),
        ("busy", "render"),
    ]
    assert steal_from("thief", ["render", "ocr"], workers, 102.0, ttl_s=60)[:2] == [
        ("other", "ocr"),
        ("busier", "ocr"),
    ]
    assert steal_from("busy", ["render"], [w("busy", load=5)], 102.0, ttl_s=60) == []  # never from itself
