"""Work stealing at the store: an idle worker takes tasks queued for a loaded one by leasing them from that
worker's queue (the engine's ``task:@worker/type``). The lease is the atomic step: the loaded worker and
every thief race for each item and exactly one holds it; running (leased) and delayed items are not taken,
and the winner's lease fences everyone else. Run on every backend, two connections where there can be two."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from podium.clock import ManualClock
from podium.errors import LeaseLostError
from podium.store import Store
from tests.conformance.conftest import StoreFactory

BUSY_RENDER = "task:@busy/render"
BUSY_OCR = "task:@busy/ocr"
SHARED = "task:render"


@pytest.fixture
async def second(make_store: StoreFactory, backend: str, store: Store) -> AsyncIterator[Store]:
    """Another instance's connection to the same store (the memory backend: the same object)."""
    if backend == "memory":
        yield store
        return
    other = make_store()
    async with other:
        yield other


async def test_a_thief_takes_only_its_skills_from_the_loaded_workers_queue(
    store: Store, second: Store
) -> None:
    await store.enqueue(BUSY_RENDER, "r1", {"task_id": "r1"})
    await store.enqueue(BUSY_RENDER, "r2", {"task_id": "r2"}, priority=5)
    await store.enqueue(BUSY_OCR, "o1", {"task_id": "o1"})
    # The idle worker (on the other instance) looks in its own queues first, then steals from busy's render
    assert await second.take([SHARED, "task:@idle/render"], owner="idle", lease_s=30, limit=5) == []
    stolen = await second.take([BUSY_RENDER], owner="idle", lease_s=30, limit=5)
    assert [(lease.id, lease.owner) for lease in stolen] == [("r2", "idle"), ("r1", "idle")]
    # busy itself finds only what the thief has no skill for
    left = await store.take([SHARED, BUSY_RENDER, BUSY_OCR], owner="busy", lease_s=30, limit=5)
    assert [lease.id for lease in left] == ["o1"]
    # the thief's leases are its own: it acks them; nobody else can
    await second.ack(stolen[0])
    with pytest.raises(LeaseLostError):
        await store.ack(stolen[0])
    assert await store.queue_depth(BUSY_RENDER) == {"ready": 0, "delayed": 0, "leased": 1}


async def test_running_and_delayed_tasks_are_not_stolen(
    store: Store, second: Store, clock: ManualClock
) -> None:
    await store.enqueue(BUSY_RENDER, "running", {})
    [running] = await store.take([BUSY_RENDER], owner="busy", lease_s=30)
    await store.enqueue(BUSY_RENDER, "retry", {}, delay_s=10)  # a retry waiting for its backoff
    assert await second.take([BUSY_RENDER], owner="idle", lease_s=30, limit=5) == []
    await clock.advance(10)
    [late] = await second.take([BUSY_RENDER], owner="idle", lease_s=30, limit=5)
    assert late.id == "retry"
    await store.extend(running, 30)  # busy still holds its own task


async def test_the_loaded_worker_and_thieves_race_and_each_task_goes_to_exactly_one(
    store: Store, second: Store
) -> None:
    n = 24
    for i in range(n):
        await store.enqueue(BUSY_RENDER, f"t{i:02}", {})

    async def taker(s: Store, owner: str) -> list[tuple[str, str]]:
        got: list[tuple[str, str]] = []
        while True:
            leases = await s.take([BUSY_RENDER], owner=owner, lease_s=30, limit=2)
            if not leases:
                return got
            got += [(lease.id, lease.owner) for lease in leases]

    results = await asyncio.gather(
        taker(store, "busy"), taker(second, "idle-1"), taker(second, "idle-2"), taker(store, "idle-3")
    )
    taken = [item for got in results for item in got]
    assert sorted(i for i, _ in taken) == [f"t{i:02}" for i in range(n)]  # every task once, none twice
    assert all(
        owner == who
        for got, who in zip(results, ["busy", "idle-1", "idle-2", "idle-3"], strict=True)
        for _, owner in got
    )
    assert await store.queue_depth(BUSY_RENDER) == {"ready": 0, "delayed": 0, "leased": n}
