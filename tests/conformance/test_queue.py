"""Queues with leases: order, delay, expiry, fencing, long-poll wake-ups."""

from __future__ import annotations

import asyncio

import pytest

from podium.clock import ManualClock
from podium.errors import ConflictError, LeaseLostError
from podium.store import Fetch, Put, Store, Wake


async def test_fifo_within_priority_and_priority_first(store: Store) -> None:
    for i in range(5):
        await store.enqueue("q", f"t{i}", {"i": i})
    await store.enqueue("q", "urgent", {}, priority=10)
    leases = await store.take("q", owner="w", lease_s=30, limit=10)
    assert [lease.id for lease in leases] == ["urgent", "t0", "t1", "t2", "t3", "t4"]
    assert leases[1].payload == {"i": 0} and leases[1].attempts == 1 and leases[1].owner == "w"
    assert len({lease.token for lease in leases}) == 6


async def test_priority_and_order_across_queues(store: Store) -> None:
    await store.enqueue("a", "a1", {})
    await store.enqueue("b", "b1", {})
    await store.enqueue("b", "b2", {}, priority=1)
    await store.enqueue("a", "a2", {})
    leases = await store.take(["a", "b"], owner="w", lease_s=30, limit=10)
    assert [lease.id for lease in leases] == ["b2", "a1", "b1", "a2"]


async def test_enqueue_is_idempotent_by_id(store: Store) -> None:
    assert await store.enqueue("q", "t", {"v": 1}) is True
    assert await store.enqueue("q", "t", {"v": 2}) is False
    [lease] = await store.take("q", owner="w", lease_s=30, limit=5)
    assert lease.payload == {"v": 1}
    assert await store.enqueue("q", "t", {"v": 3}) is False  # leased items count too


async def test_delay_holds_item_until_due(store: Store, clock: ManualClock) -> None:
    await store.enqueue("q", "later", {}, delay_s=10)
    await store.enqueue("q", "now", {})
    assert [lease.id for lease in await store.take("q", owner="w", lease_s=30, limit=5)] == ["now"]
    assert await store.queue_depth("q") == {"ready": 0, "delayed": 1, "leased": 1}
    await clock.advance(10)
    assert [lease.id for lease in await store.take("q", owner="w", lease_s=30)] == ["later"]


async def test_ack_removes_and_stale_token_is_refused(store: Store) -> None:
    await store.enqueue("q", "t", {})
    [lease] = await store.take("q", owner="w", lease_s=30)
    await store.ack(lease)
    assert await store.queue_depth("q") == {"ready": 0, "delayed": 0, "leased": 0}
    with pytest.raises(LeaseLostError):
        await store.ack(lease)


async def test_expired_lease_makes_task_available_again(store: Store, clock: ManualClock) -> None:
    await store.enqueue("q", "t", {"k": "v"})
    [first] = await store.take("q", owner="w1", lease_s=5)
    assert await store.take("q", owner="w2", lease_s=5) == []
    await clock.advance(5.01)
    [second] = await store.take("q", owner="w2", lease_s=5)
    assert second.id == "t" and second.attempts == 2 and second.token > first.token and second.owner == "w2"
    for call in (store.ack(first), store.extend(first, 10), store.nack(first)):
        with pytest.raises(LeaseLostError):
            await call
    await store.ack(second)


async def test_extend_keeps_the_lease(store: Store, clock: ManualClock) -> None:
    await store.enqueue("q", "t", {})
    [lease] = await store.take("q", owner="w", lease_s=5)
    await clock.advance(4)
    lease = await store.extend(lease, 5)
    await clock.advance(4)
    assert await store.take("q", owner="other", lease_s=5) == []
    await store.ack(lease)


async def test_nack_with_delay(store: Store, clock: ManualClock) -> None:
    await store.enqueue("q", "t", {})
    [lease] = await store.take("q", owner="w", lease_s=5)
    await store.nack(lease, delay_s=3)
    assert await store.take("q", owner="w", lease_s=5) == []
    await clock.advance(3)
    [again] = await store.take("q", owner="w", lease_s=5)
    assert again.attempts == 2


async def test_dequeue_removes_waiting_or_leased(store: Store) -> None:
    await store.enqueue("q", "a", {})
    await store.enqueue("q", "b", {})
    [lease] = await store.take("q", owner="w", lease_s=5)
    assert await store.dequeue("q", lease.id) is True
    assert await store.dequeue("q", "b") is True
    assert await store.dequeue("q", "b") is False
    with pytest.raises(LeaseLostError):
        await store.ack(lease)


async def test_long_poll_wakes_on_enqueue(store: Store, clock: ManualClock) -> None:
    waiter = asyncio.create_task(store.take("q", owner="w", lease_s=5, wait_s=60))
    await asyncio.sleep(0)  # let the waiter look at the empty queue (no clock time passes)
    for _ in range(20):
        await asyncio.sleep(0)
    assert not waiter.done()
    await store.enqueue("q", "t", {"x": 1})
    leases = await asyncio.wait_for(waiter, timeout=5)
    assert [lease.id for lease in leases] == ["t"]


async def test_long_poll_wakes_when_delayed_item_falls_due(store: Store, clock: ManualClock) -> None:
    await store.enqueue("q", "t", {}, delay_s=30)
    waiter = asyncio.create_task(store.take("q", owner="w", lease_s=5, wait_s=60))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not waiter.done()
    await clock.advance(30)
    leases = await asyncio.wait_for(waiter, timeout=5)
    assert [lease.id for lease in leases] == ["t"]


async def test_long_poll_times_out_empty(store: Store, clock: ManualClock) -> None:
    waiter = asyncio.create_task(store.take("q", owner="w", lease_s=5, wait_s=10))

    async def waiting() -> None:  # the take found nothing and armed its long-poll timer on the clock
        while clock.next_deadline is None:
            await asyncio.sleep(0.001)

    await asyncio.wait_for(waiting(), timeout=5)
    await clock.advance(10)
    assert await asyncio.wait_for(waiter, timeout=5) == []


async def test_enqueue_already_leased(store: Store, clock: ManualClock) -> None:
    from podium.store import Enqueue, Put

    lease, rec = await store.apply(
        Enqueue("q", "step-1", {"job": "j"}, lease_owner="engine-a", lease_s=5), Put("job", "j", {"step": 1})
    )
    assert lease.id == "step-1" and lease.owner == "engine-a" and lease.attempts == 1 and rec.version == 1
    assert lease.payload == {"job": "j"} and lease.expires_at == clock.now() + 5
    assert await store.take("q", owner="other", lease_s=5) == []  # held, not offered
    assert (await store.apply(Enqueue("q", "step-1", {}, lease_owner="engine-b", lease_s=5))) == [None]
    await clock.advance(5.5)  # the owner died: the item is offered to others
    [again] = await store.take("q", owner="engine-b", lease_s=5)
    assert again.id == "step-1" and again.attempts == 2 and again.token > lease.token
    with pytest.raises(LeaseLostError):
        await store.ack(lease)


async def test_non_durable_write_is_visible_and_atomic(store: Store) -> None:
    from podium.store import Put

    await store.apply(Put("job", "j", {"v": 1}), durable=False)
    await store.apply(Put("job", "k", {"v": 2}))
    got = await store.get("job", "j")
    assert got is not None and got.data == {"v": 1}


async def test_a_take_cancelled_while_it_commits_gives_its_items_back(store: Store) -> None:
    # Given an item, and a taker that leaves just as the store commits its take (a long poll answered
    # another way, or whose worker hung up)
    await store.enqueue("q", "a", {})
    take = asyncio.ensure_future(store.take("q", owner="gone", lease_s=300))
    await asyncio.sleep(0)  # the take is under way in the store
    take.cancel()
    try:
        got = await take
    except asyncio.CancelledError:
        got = []
    for lease in got:  # it finished before the cancel could land: the caller has it and gives it back
        await store.nack(lease)
    # Then the item is offered again at once (not when a 300 s lease expires)
    again = await asyncio.wait_for(store.take("q", owner="next", lease_s=30, wait_s=60), 10)
    assert [lease.id for lease in again] == ["a"]


async def test_a_wake_wakes_its_watchers_once_committed_and_writes_nothing(store: Store) -> None:
    # Given watchers on two names (and a group-committed batch on PostgreSQL: several calls at once)
    job_end, other = store.watch("job-end:j1"), store.watch("job-end:j2")
    # When a batch with a Wake of one name commits
    results = await asyncio.gather(
        store.apply(Put("job", "j1", {"done": True}), Wake("job-end:j1")),
        store.apply(Put("job", "j3", {})),
    )
    # Then that name's watcher fires, the other's does not, and the Wake's result is None
    await asyncio.wait_for(job_end, timeout=5)
    assert results[0][1] is None and not other.done()
    store.unwatch("job-end:j2", other)
    assert await store.count("job") == 2 and await store.history("job-end:j1") == []


async def test_a_wake_in_a_refused_batch_wakes_no_one(store: Store) -> None:
    watcher = store.watch("job-end:j1")
    await store.put("job", "j1", {})
    with pytest.raises(ConflictError):
        await store.apply(Put("job", "j1", {}, expected_version=0), Wake("job-end:j1"))
    # the refused batch sent nothing: a later wake is the first to reach the watcher
    assert not watcher.done()
    await store.apply(Wake("job-end:j1"))
    await asyncio.wait_for(watcher, timeout=5)


async def test_a_take_with_fetch_returns_each_items_record_and_its_group_record(store: Store) -> None:
    job = await store.put("job", "j1", {"n": 1}, status="running")
    task = await store.put("task", "t1", {"attempt": 2}, status="queued", group="j1")
    await store.put("task", "t2", {"attempt": 1}, status="queued")  # no group
    await store.enqueue("q", "t1:2", {"task_id": "t1"})
    await store.enqueue("q", "t2:1", {"task_id": "t2"})
    await store.enqueue("q", "gone:1", {"task_id": "gone"})  # no record
    await store.enqueue("q", "plain", {})  # no ':' in its id: the record of the whole id
    await store.put("task", "plain", {"x": True})
    leases = await store.take("q", owner="w", lease_s=30, limit=10, fetch=Fetch("task", "job"))
    assert [lease.id for lease in leases] == ["t1:2", "t2:1", "gone:1", "plain"]
    assert leases[0].records == (task, job)
    assert leases[0].records[0] is not None and leases[0].records[0].data == {"attempt": 2}
    assert leases[1].records[0] is not None and leases[1].records[0].id == "t2"
    assert leases[1].records[1] is None  # the record has no group
    assert leases[2].records == (None, None)
    assert leases[3].records[0] is not None and leases[3].records[0].data == {"x": True}
    # the leases are ordinary leases: the fencing token holds, and they ack
    for lease in leases:
        await store.ack(lease)
    assert await store.queue_depth("q") == {"ready": 0, "delayed": 0, "leased": 0}


async def test_a_take_with_fetch_over_several_queues_returns_each_items_records(store: Store) -> None:
    job = await store.put("job", "j1", {"n": 1}, status="running")
    t1 = await store.put("task", "t1", {"a": 1}, status="queued", group="j1")
    t2 = await store.put("task", "t2", {"a": 2}, status="queued", group="j1")
    await store.enqueue("qa", "t1:1", {}, priority=1)
    await store.enqueue("qb", "t2:3", {})
    await store.enqueue("qb", "x:y:1", {})  # the record's id is the item's id up to its last ':'
    await store.put("task", "x:y", {"a": 3})
    leases = await store.take(["qa", "qb"], owner="w", lease_s=30, limit=10, fetch=Fetch("task", "job"))
    assert [lease.id for lease in leases] == ["t1:1", "t2:3", "x:y:1"]
    assert leases[0].records == (t1, job) and leases[1].records == (t2, job)
    assert leases[2].records[0] is not None and leases[2].records[0].data == {"a": 3}
    assert leases[2].records[1] is None
    # without a group kind: only the first record
    await store.enqueue("qb", "t1:2", {})
    [lease] = await store.take(["qa", "qb"], owner="w", lease_s=30, fetch=Fetch("task"))
    assert lease.records == (t1,)


async def test_a_take_with_fetch_reads_records_as_they_are_at_the_take(store: Store) -> None:
    await store.put("task", "t1", {"v": 1}, status="queued", group="j1")
    rec = await store.put("task", "t1", {"v": 2}, expected_version=1, status="queued", group="j1")
    await store.enqueue("q", "t1:1", {})
    [lease] = await store.take("q", owner="w", lease_s=30, fetch=Fetch("task"))
    assert lease.records == (rec,) and rec.version == 2
    # without fetch, a lease carries no records
    await store.enqueue("q", "t1:2", {})
    [plain] = await store.take("q", owner="w", lease_s=30)
    assert plain.records == ()
    # nor does an empty take fail
    assert await store.take("q", owner="w", lease_s=30, fetch=Fetch("task", "job")) == []
