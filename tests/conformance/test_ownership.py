"""FencedOwnership: one owner at a time over a store lock, on every backend."""

from __future__ import annotations

import asyncio

import pytest

from podium.clock import ManualClock
from podium.store import Store
from podium.store.ownership import FencedOwnership


class Calls:
    def __init__(self) -> None:
        self.acquired: list[int] = []
        self.lost = 0
        self.held = 0
        self.changed = asyncio.Event()

    async def on_acquired(self, token: int) -> None:
        self.acquired.append(token)
        self.changed.set()

    async def on_lost(self) -> None:
        self.lost += 1
        self.changed.set()

    async def on_held(self) -> None:
        self.held += 1
        self.changed.set()


async def sleeping(clock: ManualClock) -> None:
    """Wait until some task sleeps on the clock (the ownership loop, between rounds; SQLite answers from a
    thread, so a round takes real time)."""

    async def waiting() -> None:
        while clock.next_deadline is None:
            await asyncio.sleep(0.001)

    await asyncio.wait_for(waiting(), timeout=5)


def owner(store: Store, clock: ManualClock, holder: str, calls: Calls, ttl_s: float = 9.0) -> FencedOwnership:
    return FencedOwnership(
        store,
        "test:owner",
        holder,
        ttl_s=ttl_s,
        clock=clock,
        on_acquired=calls.on_acquired,
        on_lost=calls.on_lost,
        on_held=calls.on_held,
    )


async def test_one_owner_then_take_over_when_the_owner_goes_quiet(store: Store, clock: ManualClock) -> None:
    ca, cb = Calls(), Calls()
    a, b = owner(store, clock, "a", ca), owner(store, clock, "b", cb)
    assert await a.acquire() is True and a.is_owner and a.token is not None
    assert ca.acquired == []  # acquire() is for start-up: the caller loads its state itself
    assert await b.check() is False and not b.is_owner and cb.acquired == []
    assert await a.tick() is True and ca.held == 1  # refreshed, still the owner
    first = a.token
    assert first is not None
    await clock.advance(9.5)  # a stopped refreshing: its lock expired
    assert await b.check() is True
    assert b.token is not None and b.token > first and cb.acquired == [b.token]
    assert await a.check() is False  # a's refresh fails: it steps down
    assert not a.is_owner and ca.lost == 1


async def test_the_loop_refreshes_every_third_of_the_ttl(store: Store, clock: ManualClock) -> None:
    calls = Calls()
    a = owner(store, clock, "a", calls)
    a.start()
    try:
        for n in (1, 2, 3):
            calls.changed.clear()
            await sleeping(clock)
            await clock.advance(a.refresh_interval_s)
            await asyncio.wait_for(calls.changed.wait(), 5)
            assert a.is_owner and calls.held == n
        assert len(calls.acquired) == 1 and calls.held == 3
        # The lock outlives its TTL because the loop keeps refreshing it: another holder cannot take it.
        assert await owner(store, clock, "b", Calls()).check() is False
    finally:
        await a.stop()
    assert not a.is_owner
    # stop() released the lock: the next holder takes it at once.
    assert await owner(store, clock, "b", Calls()).check() is True


async def test_a_failing_round_is_logged_and_the_loop_goes_on(store: Store, clock: ManualClock) -> None:
    rounds: list[int] = []
    went_on = asyncio.Event()

    async def flaky() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise RuntimeError("boom")
        went_on.set()

    a = FencedOwnership(store, "test:owner", "a", ttl_s=3.0, clock=clock, on_held=flaky)
    a.start()
    try:
        for _ in range(2):
            await sleeping(clock)
            await clock.advance(1.0)
        await asyncio.wait_for(went_on.wait(), 5)
        assert rounds == [0, 1] and a.is_owner
    finally:
        await a.stop()


async def test_stop_without_release_keeps_the_lock_until_its_ttl(store: Store, clock: ManualClock) -> None:
    a = owner(store, clock, "a", Calls())
    assert await a.acquire()
    await a.stop(release=False)
    assert await owner(store, clock, "b", Calls()).check() is False
    await clock.advance(10)
    assert await owner(store, clock, "b", Calls()).check() is True


def test_ttl_must_be_positive(store: Store) -> None:
    with pytest.raises(ValueError, match="ttl_s must be positive"):
        FencedOwnership(store, "x", "a", ttl_s=0)
