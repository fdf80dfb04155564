"""Durable backends keep everything across close and reopen."""

from __future__ import annotations

import pytest

from podium.clock import ManualClock
from podium.errors import ConflictError
from podium.store import Delete, Put
from tests.conformance.conftest import BACKENDS, StoreFactory

DURABLE = [b for b in BACKENDS if b != "memory"]  # memory is not durable by design


@pytest.fixture(params=DURABLE)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_everything_survives_reopen(make_store: StoreFactory, clock: ManualClock) -> None:
    async with make_store() as s:
        await s.put("job", "a", {"x": [1, 2]}, status="running", group="bp")
        await s.enqueue("q", "t1", {"p": 1})
        await s.enqueue("q", "t2", {"p": 2})
        [lease] = await s.take("q", owner="w", lease_s=5)
        token = await s.acquire_lock("l", "a", ttl_s=100)
        await s.append("a", "created", status="pending")
    async with make_store() as s:
        rec = await s.get("job", "a")
        assert rec is not None and rec.data == {"x": [1, 2]} and rec.status == "running" and rec.version == 1
        # t1's lease survived the restart: only t2 is offered until it expires.
        assert [(x.id, x.attempts) for x in await s.take("q", owner="w2", lease_s=5, limit=5)] == [("t2", 1)]
        await clock.advance(6)
        leases = await s.take("q", owner="w2", lease_s=5, limit=5)
        assert [(x.id, x.attempts) for x in leases] == [("t1", 2), ("t2", 2)]
        assert leases[0].token > lease.token
        assert await s.acquire_lock("l", "b", ttl_s=1) is None
        assert token is not None and await s.refresh_lock("l", "a", token, ttl_s=1)
        assert [e.event for e in await s.history("a")] == ["created"]


async def test_another_instance_s_writes_are_read_at_once(make_store: StoreFactory) -> None:
    """Two instances on the same data (two processes on one SQLite file, two servers on one database): what
    one writes, the other reads on its next call, even a record it wrote itself and may keep."""
    async with make_store() as a, make_store() as b:
        [mine] = await a.apply(Put("job", "j1", {"by": "a"}, None, "running"))
        got = await a.get("job", "j1")
        assert got is not None and got.data == {"by": "a"}
        [theirs] = await b.apply(Put("job", "j1", {"by": "b"}, mine.version, "finished"))
        peeked = a.peek("job", "j1")  # at once (a server answering a status poll): theirs, or nothing known
        assert peeked is None or (peeked.data, peeked.version) == ({"by": "b"}, theirs.version)
        got = await a.get("job", "j1")
        assert got is not None and (got.data, got.version, got.status) == (
            {"by": "b"},
            theirs.version,
            "finished",
        )
        with pytest.raises(ConflictError):  # a decision on a's stale version fails
            await a.apply(Put("job", "j1", {"by": "a"}, mine.version, "running"))
        await b.apply(Delete("job", "j1"))
        assert a.peek("job", "j1") is None
        assert await a.get("job", "j1") is None
        assert await a.count("job") == 0
