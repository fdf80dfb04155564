"""Locks with TTL and fencing tokens; append-only history and its queries."""

from __future__ import annotations

from podium.clock import ManualClock
from podium.store import Store


async def test_lock_excludes_then_expires_with_higher_token(store: Store, clock: ManualClock) -> None:
    t1 = await store.acquire_lock("scheduler", "a", ttl_s=10)
    assert t1 is not None
    assert await store.acquire_lock("scheduler", "b", ttl_s=10) is None
    assert await store.refresh_lock("scheduler", "a", t1, ttl_s=10) is True
    await clock.advance(10.5)
    t2 = await store.acquire_lock("scheduler", "b", ttl_s=10)
    assert t2 is not None and t2 > t1
    assert await store.refresh_lock("scheduler", "a", t1, ttl_s=10) is False
    assert await store.release_lock("scheduler", "a", t1) is False
    assert await store.release_lock("scheduler", "b", t2) is True
    t3 = await store.acquire_lock("scheduler", "a", ttl_s=10)
    assert t3 is not None and t3 > t2


async def test_lock_refresh_after_expiry_fails(store: Store, clock: ManualClock) -> None:
    token = await store.acquire_lock("l", "a", ttl_s=1)
    assert token is not None
    await clock.advance(2)
    assert await store.refresh_lock("l", "a", token, ttl_s=1) is False


async def test_history_order_and_queries(store: Store, clock: ManualClock) -> None:
    start = clock.now()
    await store.append("job1", "created", status="pending", data={"n": 1})
    await clock.advance(10)
    await store.append("job2", "created", status="pending")
    await store.append("job1", "transition", status="running")
    await clock.advance(10)
    await store.append("job1", "finished", status="finished", data={"result": [1, 2]})
    everything = await store.history()
    assert [e.subject_id for e in everything] == ["job1", "job2", "job1", "job1"]
    assert [e.seq for e in everything] == sorted(e.seq for e in everything)
    job1 = await store.history("job1")
    assert [e.event for e in job1] == ["created", "transition", "finished"]
    assert job1[-1].data == {"result": [1, 2]}
    assert [e.subject_id for e in await store.history(status="pending")] == ["job1", "job2"]
    assert [e.event for e in await store.history(since=start + 5, until=start + 15)] == [
        "created",
        "transition",
    ]
    assert [e.event for e in await store.history("job1", after_seq=job1[0].seq, limit=1)] == ["transition"]
    assert [e.subject_id for e in await store.history(event="finished")] == ["job1"]


async def test_append_returns_its_data_and_history_is_not_aliased(store: Store) -> None:
    data = {"result": {"wells": [1, 2]}}
    entry = await store.append("job", "finished", status="finished", data=data)
    assert entry.data == {"result": {"wells": [1, 2]}} and entry.event == "finished"
    data["result"]["wells"].append(3)
    [stored] = await store.history("job")
    assert stored.data == {"result": {"wells": [1, 2]}}
    stored.data["result"]["wells"].append(4)
    assert (await store.history("job"))[0].data == {"result": {"wells": [1, 2]}}
    assert (await store.append("job", "note")).data == {}
