"""The remote-worker registry on every backend: two engine instances, each with its own connection to one
store (the memory backend: one store object), see the same registrations, heartbeats, load and reputation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from podium.clock import ManualClock
from podium.engine import Config, OrchestratorEngine
from podium.engine.errors import JobNotFoundError
from podium.engine.strategy import NoWorker, effective_load
from podium.store import Store
from tests.conformance.conftest import StoreFactory

SCHEMA = {
    "type": "object",
    "required": ["size"],
    "properties": {"size": {"type": "object", "properties": {"w": {"type": "integer"}}, "required": ["w"]}},
}


@pytest.fixture
async def pair(
    make_store: StoreFactory, backend: str, clock: ManualClock
) -> AsyncIterator[tuple[OrchestratorEngine, OrchestratorEngine]]:
    """Two engines (not started: the registry needs none of their loops) on one store."""
    first = make_store()
    second = first if backend == "memory" else make_store()
    stores: list[Store] = [first] if second is first else [first, second]
    for s in stores:
        await s.open()
    config = Config(DISPATCHER_CACHE_TTL_S=0, WORKER_HEALTH_CHECK_INTERVAL_SECONDS=30)
    try:
        yield (
            OrchestratorEngine(first, config, clock=clock, instance_id="a"),
            OrchestratorEngine(second, config, clock=clock, instance_id="b"),
        )
    finally:
        for s in stores:
            await s.close()


async def register(engine: OrchestratorEngine, worker_id: str, cost: float, **info: object) -> None:
    await engine.register_worker_record(
        worker_id,
        ["render"],
        capacity=2,
        kind="remote",
        info={
            "worker_type": "gpu",
            "cost_per_skill": {"render": cost},
            "skill_infos": {"render": {"name": "render", "input_schema": SCHEMA}},
            **info,
        },
    )


def spec(strategy: str, **kw: object) -> dict[str, object]:
    return {"task_type": "render", "params": {"size": {"w": 2}}, "dispatch_strategy": strategy, **kw}


async def test_a_registration_on_one_instance_is_a_candidate_on_the_other(
    pair: tuple[OrchestratorEngine, OrchestratorEngine],
) -> None:
    a, b = pair
    await register(a, "w1", 2.0, hot_skills=["render"])
    state = await b.worker_state("w1")
    assert state is not None
    assert (state.worker_type, state.capacity, dict(state.costs), state.hot) == (
        "gpu",
        2,
        {"render": 2.0},
        frozenset({"render"}),
    )
    assert state.skills["render"]["input_schema"] == SCHEMA
    assert await b.dispatch.fleet.choose(spec("cheapest")) == "w1"
    # the other instance matches the task's params against the stored input schema
    bad = {**spec("cheapest"), "params": {"size": {"w": "x"}}}
    assert isinstance(await b.dispatch.fleet.choose(bad), NoWorker)
    assert await b.worker_state("nobody") is None


async def test_load_counts_dispatches_from_any_instance_until_a_heartbeat(
    pair: tuple[OrchestratorEngine, OrchestratorEngine], clock: ManualClock
) -> None:
    a, b = pair
    await register(a, "w1", 1.0)
    await register(b, "w2", 1.0)
    # Given w1 chosen twice (once by each instance), w2 not at all
    assert await a.dispatch.fleet.choose(spec("least_connections")) == "w1"
    assert await b.dispatch.fleet.choose(spec("least_connections")) == "w2"
    assert await b.dispatch.fleet.choose(spec("least_connections")) == "w1"
    w1 = await a.worker_state("w1")
    assert w1 is not None and effective_load(w1) == 2
    # When w1's heartbeat (to instance b) reports one task held, that report replaces the count
    await clock.advance(1.0)
    await b.heartbeat_worker("w1", status="busy", load=1, hot_skills=["render"])
    w1 = await a.worker_state("w1")
    assert w1 is not None and (effective_load(w1), w1.status, w1.hot) == (1, "busy", frozenset({"render"}))
    # and a result through either instance takes a counted dispatch off
    await a.dispatch.fleet.count_dispatch("w2")
    await b.score_worker("w2", None)
    w2 = await a.worker_state("w2")
    assert w2 is not None and effective_load(w2) == 1


async def test_reputation_is_shared_counted_once_per_result_and_kept_on_reregistering(
    pair: tuple[OrchestratorEngine, OrchestratorEngine],
) -> None:
    a, b = pair
    await register(a, "w1", 1.0)
    assert await a.score_worker("w1", "contract_violation") == pytest.approx(0.8)
    state = await b.worker_state("w1")
    assert state is not None and state.reputation == pytest.approx(0.8)
    # Both instances score at once: every penalty counts (the record changes under its version)
    await asyncio.gather(*(e.score_worker("w1", "failure") for e in (a, b) for _ in range(4)))
    state = await a.worker_state("w1")
    assert state is not None and state.reputation == pytest.approx(0.8 - 8 * 0.05)
    # Registering again does not wash it clean, and below REPUTATION_MIN_THRESHOLD (0.3) it is passed over
    await register(b, "w1", 1.0)
    assert await b.score_worker("w1", "success") == pytest.approx(0.401)
    await a.score_worker("w1", "failure")
    await a.score_worker("w1", "failure")
    await a.score_worker("w1", "failure")
    assert (await a.worker_state("w1")).reputation == pytest.approx(0.251)  # type: ignore[union-attr]
    choice = await b.dispatch.fleet.choose(spec("cheapest"))
    assert choice == NoWorker("No suitable workers meeting the reputation threshold (0.3) for task 'render'")
    assert await a.score_worker("nobody", "failure") is None


async def test_a_worker_gone_on_one_instance_is_gone_on_the_other(
    pair: tuple[OrchestratorEngine, OrchestratorEngine], clock: ManualClock
) -> None:
    a, b = pair
    await register(a, "w1", 1.0)
    await register(a, "w2", 5.0)
    await b.heartbeat_worker("w1", status="offline")
    assert await a.dispatch.fleet.choose(spec("cheapest")) == "w2"
    with pytest.raises(JobNotFoundError):
        await a.heartbeat_worker("w1", status="idle", load=0)  # it registers again
    # a worker not heard from within twice WORKER_HEALTH_CHECK_INTERVAL_SECONDS is no candidate either
    await clock.advance(61.0)
    assert await b.dispatch.fleet.choose(spec("cheapest")) is None
    await a.heartbeat_worker("w2", status="idle", load=0)
    assert await b.dispatch.fleet.choose(spec("cheapest")) == "w2"
    listed = {w.worker_id: w for w in await b.list_workers()}
    assert listed["w1"].status == "offline" and listed["w2"].last_seen == clock.now()


async def test_round_robin_takes_turns_across_instances(
    pair: tuple[OrchestratorEngine, OrchestratorEngine],
) -> None:
    a, b = pair
    await register(a, "w1", 1.0)
    await register(b, "w2", 1.0)
    # one counter in the store: instances taking turns to dispatch still alternate the workers
    picks = [await e.dispatch.fleet.choose(spec("round_robin")) for e in (a, b, a, b, b, a)]
    assert picks == ["w1", "w2", "w1", "w2", "w1", "w2"]
    # concurrent dispatches from both instances each get their own turn
    many = await asyncio.gather(*(e.dispatch.fleet.choose(spec("round_robin")) for e in (a, b) * 4))
    assert sorted(str(p) for p in many) == ["w1"] * 4 + ["w2"] * 4
