from __future__ import annotations

import asyncio
import time

import pytest

from podium.clock import ManualClock, SystemClock
from podium.ids import is_ulid, new_ulid_str, ulid_timestamp_ms


def test_ulids_sort_by_creation_even_within_a_millisecond() -> None:
    ids = [new_ulid_str() for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(is_ulid(i) and len(i) == 26 for i in ids)


def test_ulid_timestamp_is_creation_time() -> None:
    before = int(time.time() * 1000)
    value = new_ulid_str()
    after = int(time.time() * 1000)
    assert before <= ulid_timestamp_ms(value) <= after + 1
    assert not is_ulid("not-a-ulid") and not is_ulid(42)
    with pytest.raises(ValueError):
        ulid_timestamp_ms("nope")


async def test_manual_clock_wakes_sleepers_in_deadline_order() -> None:
    clock = ManualClock(start=1000.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, delay: float) -> None:
        await clock.sleep(delay)
        woke.append((name, clock.now()))

    tasks = [asyncio.create_task(sleeper(n, d)) for n, d in (("c", 30), ("a", 10), ("b", 20))]
    await asyncio.sleep(0)
    await clock.advance(15)
    assert woke == [("a", 1010.0)]
    await clock.advance(100)
    assert woke == [("a", 1010.0), ("b", 1020.0), ("c", 1030.0)]
    assert clock.now() == 1115.0 and clock.monotonic() == 115.0
    await asyncio.gather(*tasks)


async def test_manual_clock_wait_for_times_out_in_virtual_time() -> None:
    clock = ManualClock()
    never = asyncio.get_running_loop().create_future()
    waiter = asyncio.create_task(clock.wait_for(never, 5))
    await asyncio.sleep(0)
    await clock.advance(5)
    with pytest.raises(TimeoutError):
        await waiter
    assert never.cancelled()


async def test_manual_clock_does_not_go_back() -> None:
    clock = ManualClock(start=10)
    with pytest.raises(ValueError):
        await clock.set(5)


async def test_system_clock_wait_for() -> None:
    clock = SystemClock()
    assert await clock.wait_for(asyncio.sleep(0, result=7), 1) == 7
    assert abs(clock.now() - time.time()) < 1


def test_ulids_are_standard_ulids() -> None:
    import ulid

    for _ in range(200):
        value = new_ulid_str()
        parsed = ulid.ULID.from_str(value)
        assert str(parsed) == value
        assert parsed.milliseconds == ulid_timestamp_ms(value)
