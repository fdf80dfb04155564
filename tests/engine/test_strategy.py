"""choose_worker: Avtomatika's dispatch strategies and max_cost as one pure decision, table-driven."""

from __future__ import annotations

import math

import pytest

from podium.engine.strategy import Candidate, NoWorker, WorkerDirectory, choose_worker, reputation_after

CHEAP = Candidate("cheap", cost=1.0, load=5, reputation=0.5)
MID = Candidate("mid", cost=2.0, load=0, reputation=1.0)
DEAR = Candidate("dear", cost=5.0, load=2, reputation=1.0, hot=True)
UNPRICED = Candidate("unpriced", load=1)
ALL = [CHEAP, MID, DEAR, UNPRICED]

CASES = [
    # (strategy, candidates, max_cost, turn, soft_limit, expected)
    ("default", ALL, None, 0, 3, None),  # podium's default: the shared queue, whoever asks first
    ("fastest", ALL, None, 0, 3, None),
    ("no-such-strategy", ALL, None, 0, 3, None),  # Avtomatika treats unknown names as default
    ("default", ALL, 10.0, 0, 3, "dear"),  # with a cost limit: hot workers first
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


def test_the_directory_counts_load_and_turns() -> None:
    d = WorkerDirectory()
    d.register("a", ["render"], cost_per_skill={"render": 1, "other": "x"})
    d.register("b", ["render", "other"], cost_per_skill={"render": 3.0}, hot_skills=["render"])
    assert [(c.worker_id, c.cost, c.hot) for c in d.candidates("render")] == [
        ("a", 1.0, False),
        ("b", 3.0, True),
    ]
    assert [c.worker_id for c in d.candidates("other")] == ["b"]  # a's "x" is no cost: unknown
    assert d.candidates("other")[0].cost == math.inf
    # each choice counts on the chosen worker at once: least_connections alternates
    picks = [d.choose("render", "least_connections", None) for _ in range(4)]
    assert picks == ["a", "b", "a", "b"]
    d.heartbeat("a", load=0)
    d.heartbeat("b", load=7)
    assert d.choose("render", "least_connections", None) == "a"
    assert [d.choose("render", "round_robin", None) for _ in range(3)] == ["a", "b", "a"]
    d.forget("a")
    assert d.choose("render", "cheapest", 2.0) == NoWorker(
        "No worker meets the maximum cost (2.0) for task 'render'"
    )
    d.heartbeat("ghost", load=1)  # unknown workers are ignored
    assert [c.worker_id for c in d.candidates("render")] == ["b"]


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


def test_the_directory_scores_workers_and_leaves_poor_ones_out() -> None:
    d = WorkerDirectory()
    d.register("a", ["render"])
    d.register("b", ["render"])
    assert d.record("b", "contract_violation") == pytest.approx(0.8)
    assert d.record("nobody", "success") is None and d.reputation("nobody") is None
    assert [c.worker_id for c in d.candidates("render", min_reputation=0.9)] == ["a"]
    assert d.choose("render", "round_robin", None, min_reputation=0.9) == "a"
    assert d.choose("render", "round_robin", None, min_reputation=0.9) == "a"
