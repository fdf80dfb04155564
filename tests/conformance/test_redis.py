"""What only a shared Redis store shows: several instances (and processes) on one key prefix."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable

import pytest

from podium.clock import ManualClock
from podium.errors import ConflictError, LeaseLostError, MissingDependencyError, SchemaMismatchError
from podium.store import Enqueue, Put, Store, Wake, open_store
from podium.store import redis as redis_module
from podium.store.redis import RedisStore, redis_settings
from tests.conformance import redis_holder
from tests.conformance.redis_support import redis_prefix


@pytest.fixture
async def url(redis_url: str) -> AsyncIterator[str]:
    async with redis_prefix(redis_url) as prefixed:
        yield prefixed


@pytest.fixture
async def pair(url: str) -> AsyncIterator[tuple[Store, Store, ManualClock]]:
    """Two store instances on one prefix (two podium instances), on one manual clock."""
    clock = ManualClock()
    async with open_store(url, clock=clock) as a, open_store(url, clock=clock) as b:
        yield a, b, clock


async def parked(clock: ManualClock) -> None:
    """Wait until a take is parked on the clock (it looked, found nothing due, and armed its long poll)."""

    async def waiting() -> None:
        while clock.next_deadline is None:
            await asyncio.sleep(0.001)

    await asyncio.wait_for(waiting(), timeout=5)


async def test_a_take_on_one_instance_wakes_on_an_enqueue_from_another(
    pair: tuple[Store, Store, ManualClock],
) -> None:
    a, b, clock = pair
    # Given a taker on B parked for a minute of clock time that never passes
    waiter = asyncio.create_task(b.take("q", owner="b", lease_s=5, wait_s=60))
    await parked(clock)
    assert not waiter.done()
    # When A enqueues, B wakes through pub/sub, not through the clock
    await a.enqueue("q", "t1", {"from": "a"})
    [lease] = await asyncio.wait_for(waiter, timeout=5)
    assert (lease.id, lease.owner, lease.payload) == ("t1", "b", {"from": "a"})


async def test_a_nack_on_one_instance_wakes_a_taker_on_another(
    pair: tuple[Store, Store, ManualClock],
) -> None:
    a, b, clock = pair
    await a.enqueue("q", "t1", {})
    [held] = await a.take("q", owner="a", lease_s=30)
    waiter = asyncio.create_task(b.take("q", owner="b", lease_s=5, wait_s=60))
    await parked(clock)
    await a.nack(held)
    [again] = await asyncio.wait_for(waiter, timeout=5)
    assert again.id == "t1" and again.attempts == 2 and again.token > held.token


async def test_an_expired_lease_held_by_another_instance_is_offered_again(
    pair: tuple[Store, Store, ManualClock],
) -> None:
    a, b, clock = pair
    await a.enqueue("q", "t1", {"n": 1})
    [first] = await a.take("q", owner="a", lease_s=5)
    # B's long poll sleeps until A's lease falls due (the store says when), then takes the item
    waiter = asyncio.create_task(b.take("q", owner="b", lease_s=5, wait_s=60))
    await parked(clock)
    assert clock.next_deadline == first.expires_at
    await clock.advance(5)
    [second] = await asyncio.wait_for(waiter, timeout=5)
    assert (second.attempts, second.owner) == (2, "b") and second.token > first.token
    with pytest.raises(LeaseLostError):
        await a.ack(first)
    await b.ack(second)


async def test_sigkill_of_a_holder_then_its_lease_expires_and_the_item_is_offered_again(url: str) -> None:
    clock = ManualClock()
    async with open_store(url, clock=clock) as store:
        await store.enqueue("q", "t1", {"job": "j"})
        # Given another process holding the item's lease (30 s on the same clock time)
        with subprocess.Popen(
            [sys.executable, redis_holder.__file__, url, "q", repr(clock.now())],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        ) as child:
            try:
                assert child.stdout is not None
                line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 30)
                token = int(line)
                # When it dies without a word
                child.send_signal(signal.SIGKILL)
                child.wait(10)
            finally:
                if child.poll() is None:
                    child.kill()
        assert await store.take("q", owner="survivor", lease_s=5) == []  # still leased
        assert await store.queue_depth("q") == {"ready": 0, "delayed": 0, "leased": 1}
        # Then once the lease expires the item is offered again, with a higher token
        await clock.advance(30)
        [lease] = await store.take("q", owner="survivor", lease_s=5)
        assert lease.attempts == 2 and lease.token > token and lease.payload == {"job": "j"}
        await store.ack(lease)


async def test_concurrent_writers_on_two_instances_exactly_one_wins(
    pair: tuple[Store, Store, ManualClock],
) -> None:
    a, b, _ = pair
    await a.put("job", "j", {"n": 0}, expected_version=0)
    results = await asyncio.gather(
        *(
            s.apply(Put("job", "j", {"n": n}, expected_version=1), Enqueue("q", f"t{n}"))
            for n, s in enumerate((a, b, a, b))
        ),
        return_exceptions=True,
    )
    winners = [n for n, r in enumerate(results) if not isinstance(r, BaseException)]
    assert len(winners) == 1 and all(
        isinstance(r, ConflictError) for r in results if isinstance(r, BaseException)
    )
    got = await b.get("job", "j")
    assert got is not None and got.version == 2 and got.data == {"n": winners[0]}
    # the losers' enqueues were not written either
    assert [lease.id for lease in await b.take("q", owner="w", lease_s=5, limit=10)] == [f"t{winners[0]}"]


async def test_a_lock_is_shared_and_its_tokens_grow_across_instances(
    pair: tuple[Store, Store, ManualClock],
) -> None:
    a, b, clock = pair
    ta = await a.acquire_lock("owner", "a", ttl_s=10)
    assert ta is not None and await b.acquire_lock("owner", "b", ttl_s=10) is None
    await clock.advance(10)
    tb = await b.acquire_lock("owner", "b", ttl_s=10)
    assert tb is not None and tb > ta
    assert await a.refresh_lock("owner", "a", ta, ttl_s=10) is False


async def test_prefixes_keep_deployments_apart(redis_url: str) -> None:
    clock = ManualClock()
    async with (
        redis_prefix(redis_url) as one,
        redis_prefix(redis_url) as two,
        open_store(one, clock=clock) as a,
        open_store(two, clock=clock) as b,
    ):
        await a.put("job", "j", {"in": "one"})
        await a.enqueue("q", "t", {})
        await a.append("j", "created")
        assert await b.get("job", "j") is None and await b.count("job") == 0
        assert await b.take("q", owner="w", lease_s=5) == [] and await b.history() == []
        # a wake-up on one prefix does not reach takers on the other
        waiter = asyncio.create_task(b.take("q", owner="w", lease_s=5, wait_s=60))
        await parked(clock)
        await a.enqueue("q", "t2", {})
        await asyncio.sleep(0.05)
        assert not waiter.done()
        waiter.cancel()


async def test_another_key_layout_refuses_to_open(url: str) -> None:
    import redis.asyncio as aioredis

    _, prefix = redis_settings(url)
    client = aioredis.Redis.from_url(url.split("?")[0])
    try:
        await client.hset(prefix + "meta", "layout", "redis-0/0000")
    finally:
        await client.aclose()
    with pytest.raises(SchemaMismatchError, match="redis-0/0000"):
        await open_store(url).open()


def test_the_url_gives_the_server_and_the_prefix() -> None:
    assert redis_settings("redis://h:6380/2") == ("redis://h:6380/2", "podium:")
    assert redis_settings("redis://h:6380/2?prefix=lab1&socket_timeout=5") == (
        "redis://h:6380/2?socket_timeout=5",
        "lab1:",
    )
    assert redis_settings("redis://h/0?prefix=lab1:") == ("redis://h/0", "lab1:")
    store = open_store("redis://h:6380/2?prefix=lab1")
    assert isinstance(store, RedisStore) and store.prefix == "lab1:" and store.channel == "lab1:wake"
    with pytest.raises(ValueError, match="prefix must not be empty"):
        redis_settings("redis://h/0?prefix=")


async def test_without_the_driver_open_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)  # what a missing package looks like to import
    with pytest.raises(MissingDependencyError, match=r"pip install 'podium\[redis\]'"):
        await open_store("redis://127.0.0.1:6379/0").open()


async def test_a_call_cancelled_in_flight_is_cancelled(url: str) -> None:
    # redis-py 8.0-8.2 swallow a cancellation that lands mid-command: the task runs on and an engine's
    # stop() waits for it (hence the extra's `redis<8`). Cancel calls at many points of their round trip.
    async with open_store(url, clock=ManualClock()) as store:

        async def busy() -> None:
            while True:
                await store.take_now(["q"], owner="w", lease_s=5, limit=1)

        for n in range(40):
            task = asyncio.create_task(busy())
            for _ in range(n):
                await asyncio.sleep(0)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=5)
            assert done and task.cancelled(), f"the cancel after {n} loop turns was swallowed"
        assert await store.take_now(["q"], owner="w", lease_s=5, limit=1) == []  # the store still answers


async def test_avtomatika_style_storage_from_a_client(url: str) -> None:
    import redis.asyncio as aioredis

    from podium.engine.storage import RedisStorage

    server, prefix = redis_settings(url)
    client = aioredis.Redis.from_url(server)  # bytes replies: the store opens its own decoding connections
    try:
        async with RedisStorage(client, prefix=prefix, clock=ManualClock()) as storage:
            await storage.put("job", "j", {"n": 1}, status="pending")
            got = await storage.get("job", "j")
            assert got is not None and got.data == {"n": 1} and got.status == "pending"
        assert await client.exists(prefix + "meta") == 1  # the caller's client still works, on the same keys
    finally:
        await client.aclose()


@pytest.mark.parametrize("pipelines", [1, 4])
async def test_concurrent_calls_share_round_trips_and_none_is_left_behind(
    url: str, pipelines: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Calls arrive while batches are in flight and just as a batch finishes (a call queued between a
    # sender's last look and its exit once waited forever): each wave yields a different number of turns.
    monkeypatch.setattr(redis_module, "PIPELINES", pipelines)
    async with open_store(url, clock=ManualClock()) as store:
        await store.put("job", "j", {"n": 1})
        for wave in range(30):
            calls = [asyncio.ensure_future(store.get("job", "j")) for _ in range(wave % 7 + 1)]
            for _ in range(wave % 5):
                await asyncio.sleep(0)
            calls += [asyncio.ensure_future(store.put("job", f"k{wave}", {"w": wave}))]
            results = await asyncio.wait_for(asyncio.gather(*calls), timeout=5)
            assert all(r is not None and r.data == {"n": 1} for r in results[:-1])
        assert await store.count("job") == 31


def test_a_history_argument_makes_a_split_store() -> None:
    from podium.store.split import SplitStore, split_history_url

    url = "redis://h:6379/0?prefix=lab&history=sqlite:///data/history.db"
    assert split_history_url(url) == ("redis://h:6379/0?prefix=lab", "sqlite:///data/history.db")
    assert split_history_url("redis://h/0?prefix=lab") == ("redis://h/0?prefix=lab", None)
    store = open_store(url)
    assert isinstance(store, SplitStore) and isinstance(store.state, RedisStore)
    assert store.history_store.name == "sqlite" and store.state.prefix == "lab:"
    with pytest.raises(ValueError, match="history= names no store URL"):
        open_store("redis://h/0?history=")


async def test_a_split_store_keeps_history_out_of_redis(url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from podium.store import Append, Put
    from podium.store.sqlite import SQLiteStore

    history_db = tmp_path / "history.db"
    async with open_store(f"{url}&history=sqlite:///{history_db}", clock=ManualClock()) as store:
        await store.apply(Put("job", "j", {"n": 1}, status="running"), Append("j", "created", "pending"))
        async with open_store(url) as redis_only:  # the state store alone: the record, no history
            assert (await redis_only.get("job", "j")) is not None and await redis_only.history() == []
    async with SQLiteStore(history_db) as sqlite:
        assert [(e.subject_id, e.event, e.status) for e in await sqlite.history()] == [
            ("j", "created", "pending")
        ]


async def test_a_wake_on_one_instance_wakes_a_watcher_on_another(
    pair: tuple[Store, Store, ManualClock],
) -> None:
    a, b, _ = pair
    watcher = b.watch("job-end:j1")
    await a.apply(Put("job", "j1", {}, status="finished"), Wake("job-end:j1"))
    await asyncio.wait_for(watcher, timeout=5)  # through pub/sub: the clock never moves


async def test_a_wake_reaches_only_stores_watching_its_class_and_reaches_them_by_pub_sub(
    pair: tuple[Store, Store, ManualClock],
) -> None:
    """A Wake goes to its name's class channel (``<prefix>wake:job-end``), which a store subscribes to at its
    first watcher of that class; a store that never watched the class receives none of them."""
    a, b, _ = pair
    assert isinstance(a, RedisStore) and isinstance(b, RedisStore)
    end = f"{b.channel}:job-end"
    assert end not in b._pubsub.channels
    # Given B's first job-end watcher, and B's subscription to the class's channel confirmed
    first = b.watch("job-end:j1")
    await _until(lambda: "job-end" in b._live)
    assert end in b._pubsub.channels and end not in a._pubsub.channels
    # When A ends j1 and, after it, j2 (B watching j2 too)
    second = b.watch("job-end:j2")
    await a.apply(Put("job", "j1", {}, status="finished"), Wake("job-end:j1"))
    await a.apply(Put("job", "j2", {}, status="finished"), Wake("job-end:j2"))
    # Then each wakes by its own message, in order: j1's had come when j2's did, and no other name woke
    await asyncio.wait_for(second, timeout=5)
    assert first.done()
    other = b.watch("job-end:j3")
    assert not other.done()
    b.unwatch("job-end:j3", other)
    # and A, which never watched a job end, subscribed to nothing but its queues' channel
    assert set(a._pubsub.channels) == {a._inbox}


async def test_a_wake_sent_while_the_watchers_subscription_is_on_its_way_still_wakes_it(url: str) -> None:
    """The first watcher of a class waits for a subscription; a Wake of its name published before that took
    effect is not heard but recorded (``wk``), and the watcher wakes on it once subscribed; a watcher
    of a name nobody woke does not."""
    async with open_store(url) as a, open_store(url) as b:
        assert isinstance(b, RedisStore)
        # Given A ended j1 (published to nobody: no store listens to job ends yet)
        await a.apply(Put("job", "j1", {}, status="finished"), Wake("job-end:j1"))
        # When B's first job-end watchers register, for j1 (too late for its message) and j2
        late, other = b.watch("job-end:j1"), b.watch("job-end:j2")
        # Then once B is subscribed, j1's watcher wakes and j2's does not
        await asyncio.wait_for(late, timeout=5)
        assert "job-end" in b._live and not other.done()
        b.unwatch("job-end:j2", other)


async def test_a_wake_older_than_the_kept_window_wakes_no_later_watcher(
    pair: tuple[Store, Store, ManualClock],
) -> None:
    """What a subscribing store looks up is kept ``WAKE_KEEP_S`` seconds of the stores' clock, no longer: a
    watcher arriving after that is not woken by an old Wake."""
    a, b, clock = pair
    assert isinstance(b, RedisStore)
    await a.apply(Put("job", "j1", {}, status="finished"), Wake("job-end:j1"))
    await clock.advance(redis_module.redis_lua.WAKE_KEEP_S + 1)
    await a.apply(Wake("job-end:j9"))  # a later Wake trims the kept names
    old, recent = b.watch("job-end:j1"), b.watch("job-end:j9")
    await asyncio.wait_for(recent, timeout=5)  # the look-up after B's subscription found j9's, not j1's
    assert not old.done()
    b.unwatch("job-end:j1", old)


@contextlib.asynccontextmanager
async def _queue_wakeups(store: RedisStore) -> AsyncIterator[asyncio.Queue[tuple[str, str]]]:
    """Every queue wake-up published on ``store``'s prefix, as (channel, queue), read by a connection of
    its own (subscription confirmed before the body runs)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(store.url, decode_responses=True)
    pubsub = client.pubsub()
    await pubsub.psubscribe(f"{store.channel}@*")
    confirmed = await pubsub.get_message(timeout=5.0)
    assert confirmed is not None and confirmed["type"] == "psubscribe"
    seen: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    async def read() -> None:
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is not None and message["type"] == "pmessage":
                seen.put_nowait((message["channel"], message["data"]))

    reader = asyncio.create_task(read())
    try:
        yield seen
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await pubsub.aclose()
        await client.aclose()


async def test_an_enqueue_wakes_only_the_instances_whose_take_found_nothing(url: str) -> None:
    """A take that finds nothing leaves its store's tag in the queue's waiting set; the next enqueue there
    publishes to those stores' own channels, once, and not to the enqueuer (it wakes its own in place) nor
    to a store whose take found work."""
    clock = ManualClock()
    async with (
        open_store(url, clock=clock) as a,
        open_store(url, clock=clock) as b,
        open_store(url, clock=clock) as c,
    ):
        assert isinstance(a, RedisStore) and isinstance(b, RedisStore) and isinstance(c, RedisStore)
        async with _queue_wakeups(a) as seen:
            # Given takers parked on q on A (the enqueuer) and on B; C never took from q
            on_a = asyncio.create_task(a.take("q", owner="a", lease_s=5, wait_s=60))
            on_b = asyncio.create_task(b.take("q", owner="b", lease_s=5, wait_s=60))
            await _until(lambda: _parked(clock) == 2)
            # When A enqueues two items (in one commit: B's woken take finds one whatever A's does)
            await a.apply(Enqueue("q", "t1", {}), Enqueue("q", "t2", {}))
            # Then both takers get one, B through one message on its own channel, A in place
            got = await asyncio.wait_for(asyncio.gather(on_a, on_b), timeout=5)
            assert sorted(lease.id for leases in got for lease in leases) == ["t1", "t2"]
            # When C's take on another queue finds nothing and A enqueues there (a marker)
            on_c = asyncio.create_task(c.take("r", owner="c", lease_s=5, wait_s=60))
            await _until(lambda: _parked(clock) == 1)
            await a.enqueue("r", "t3", {})
            [lease] = await asyncio.wait_for(on_c, timeout=5)
            assert lease.id == "t3"
            # Then the messages were one to B for q (none to A, which woke its own taker in place) and
            # then one to C for r, and a third enqueue on q (nobody waiting: the set was emptied) sends none
            await a.enqueue("q", "t4", {})
            await a.enqueue("r", "t5", {})  # a marker: nobody waits on r either
            await a.enqueue("q", "t6", {})
            heard = [await asyncio.wait_for(seen.get(), timeout=5) for _ in range(2)]
            assert heard == [(b._inbox, "q"), (c._inbox, "r")]
            on_b = asyncio.create_task(b.take("s", owner="b", lease_s=5, wait_s=60))
            await _until(lambda: _parked(clock) == 1)
            await a.enqueue("s", "t7", {})
            await asyncio.wait_for(on_b, timeout=5)
            assert await asyncio.wait_for(seen.get(), timeout=5) == (b._inbox, "s")  # nothing in between


async def test_a_watch_then_an_empty_take_now_is_woken_by_an_enqueue_on_another_instance(
    pair: tuple[Store, Store, ManualClock],
) -> None:
    """The executor's pattern (watch the queue, then take_now): the take that found nothing registered B in
    the same script, so an enqueue committed right after it reaches B; one that found work registers nothing."""
    a, b, _ = pair
    assert isinstance(b, RedisStore)
    await a.enqueue("q", "t0", {})
    assert [lease.id for lease in await b.take_now(["q"], owner="b", lease_s=5, limit=1)] == ["t0"]
    assert not await b._client.smembers(f"{b.prefix}qw:q")  # found work: not waiting
    woken = b.watch("q")
    assert await b.take_now(["q"], owner="b", lease_s=5, limit=1) == []
    assert await b._client.smembers(f"{b.prefix}qw:q") == {b._tag}
    await a.enqueue("q", "t1", {})
    await asyncio.wait_for(woken, timeout=5)
    assert not await b._client.smembers(f"{b.prefix}qw:q")  # heard once: the set is emptied


def _parked(clock: ManualClock) -> int:
    """How many long polls are parked on the clock (each looked, found nothing due, and armed its timer)."""
    return sum(1 for _, _, timer in clock._sleepers if not timer.done())


async def _until(pred: Callable[[], bool]) -> None:
    """Wait (bounded) until ``pred`` holds: the pub/sub connection's state, nothing to wait on here."""

    async def poll() -> None:
        while not pred():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), 5)
