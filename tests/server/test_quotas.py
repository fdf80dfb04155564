"""Plan quotas over real servers: the 429 body, windows rolling over on the injected clock, one count for
every server on one store, and a count that survives a restart."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from podium.clock import ManualClock
from podium.engine import Config, OrchestratorEngine
from podium.engine.storage import MemoryStorage
from podium.errors import ConflictError
from podium.server import QuotaExceeded, QuotaTracker
from podium.server.security import ClientConfig, Quotas
from podium.store import MemoryStore, SQLiteStore, Store
from tests.server.harness import approval_blueprint, running_stack, transcode_blueprint

START = 1_700_000_020.0  # 2023-11-14T22:13:40Z
SUBMIT = "/api/v1/jobs/transcode"
BODY = {"initial_data": {"path": "x"}}


def clients_file(tmp_path: Path, *, rpm: int | None = None, monthly: int | None = None) -> Path:
    quotas = "".join(
        f"{key} = {value}\n"
        for key, value in (("requests_per_minute", rpm), ("monthly_attempts", monthly))
        if value is not None
    )
    path = tmp_path / "clients.toml"
    path.write_text(f'[plans.tiny]\n{quotas}\n[small]\ntoken = "small-token"\nplan = "tiny"\n')
    return path


def engine_on(store: Store, clock: ManualClock) -> OrchestratorEngine:
    engine = OrchestratorEngine(store, Config(), clock=clock, serve_http=False)
    engine.register_blueprint(transcode_blueprint())
    engine.register_blueprint(approval_blueprint())
    return engine


@contextlib.asynccontextmanager
async def server(store: Store, clock: ManualClock, clients: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        running_stack(engine_on(store, clock), clients_config_path=clients) as stack,
        httpx.AsyncClient(base_url=stack.url, headers={"X-Client-Token": "small-token"}) as http,
    ):
        yield http


async def submit(http: httpx.AsyncClient) -> httpx.Response:
    return await http.post(SUBMIT, json=BODY)


async def test_requests_per_minute_429_names_client_plan_limit_and_reset_then_rolls_over(
    tmp_path: Path,
) -> None:
    clock = ManualClock(start=START)
    async with server(MemoryStorage(clock=clock), clock, clients_file(tmp_path, rpm=3)) as http:
        # Given a plan of 3 requests a minute, three requests of any kind pass
        assert (await submit(http)).status_code == 202
        assert (await http.get("/api/v1/jobs")).status_code == 200
        assert (await submit(http)).status_code == 202
        # When a fourth comes in the same minute
        refused = await submit(http)
        # Then it is refused, saying who, which plan, which limit and when it resets
        assert refused.status_code == 429
        body = refused.json()
        assert body["error"] == (
            "quota exceeded: client 'small' (plan 'tiny') reached its requests_per_minute limit of 3; "
            "resets at 2023-11-14T22:14:00Z"
        )
        assert body["field"] == "requests_per_minute"
        assert body["detail"] == {
            "client": "small",
            "plan": "tiny",
            "quota": "requests_per_minute",
            "limit": 3,
            "retry_after_s": 20.0,
            "resets_at": "2023-11-14T22:14:00Z",
        }
        assert refused.headers["Retry-After"] == "20"
        assert (await http.get("/api/v1/jobs")).status_code == 429  # every client route counts
        # And once the clock reaches the next minute, the count starts again
        await clock.advance(20)
        assert (await submit(http)).status_code == 202


async def test_monthly_attempts_roll_over_at_the_start_of_the_next_utc_month(tmp_path: Path) -> None:
    clock = ManualClock(start=1_701_388_740.0)  # 2023-11-30T23:59:00Z
    async with server(MemoryStorage(clock=clock), clock, clients_file(tmp_path, monthly=2)) as http:
        assert (await submit(http)).status_code == 202
        invalid = await http.post(SUBMIT, json={"initial_data": {}})  # an attempt, though refused
        assert invalid.status_code == 422
        refused = await submit(http)
        assert refused.status_code == 429
        assert refused.json()["detail"]["resets_at"] == "2023-12-01T00:00:00Z"
        assert refused.json()["detail"]["retry_after_s"] == 60.0
        assert (await http.get("/api/v1/jobs")).status_code == 200  # other routes are not submissions
        await clock.advance(60)  # 2023-12-01T00:00:00Z
        assert (await submit(http)).status_code == 202


async def test_two_servers_on_one_sqlite_file_enforce_one_quota(tmp_path: Path) -> None:
    clock = ManualClock(start=START)
    clients = clients_file(tmp_path, monthly=5)
    db = tmp_path / "shared.db"
    async with (
        server(SQLiteStore(db, clock=clock), clock, clients) as a,
        server(SQLiteStore(db, clock=clock), clock, clients) as b,
    ):
        # Given both servers have counted (and remember) the client's record
        assert (await submit(a)).status_code == 202
        assert (await submit(b)).status_code == 202
        # When both take submissions at once, 3 of which are left in the month
        answers = await asyncio.gather(*(submit(http) for http in [a, b] * 6))
        # Then exactly 3 are accepted over both servers, and both refuse from then on
        assert sorted(r.status_code for r in answers) == [202] * 3 + [429] * 9
        assert (await submit(a)).status_code == 429 and (await submit(b)).status_code == 429


async def test_a_restart_keeps_the_count_of_the_window(tmp_path: Path) -> None:
    clock = ManualClock(start=START)
    clients = clients_file(tmp_path, rpm=100, monthly=3)
    db = tmp_path / "podium.db"
    async with server(SQLiteStore(db, clock=clock), clock, clients) as http:
        assert [(await submit(http)).status_code for _ in range(2)] == [202, 202]
    async with server(SQLiteStore(db, clock=clock), clock, clients) as http:
        assert [(await submit(http)).status_code for _ in range(2)] == [202, 429]


async def test_concurrent_requests_of_one_client_are_counted_exactly(tmp_path: Path) -> None:
    clock = ManualClock(start=START)
    async with server(
        SQLiteStore(tmp_path / "p.db", clock=clock), clock, clients_file(tmp_path, rpm=7)
    ) as http:
        answers = await asyncio.gather(*(submit(http) for _ in range(20)))
    assert sorted(r.status_code for r in answers) == [202] * 7 + [429] * 13


class _CountingStore(MemoryStore):
    """A memory store that records every Put of a quota record and can suspend writes, so that requests
    pile up behind one in flight."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock=clock)
        self.writes = 0
        self.gate: asyncio.Event | None = None

    async def apply(self, *ops: Any, durable: bool = True) -> list[Any]:
        if self.gate is not None:
            await self.gate.wait()
        self.writes += 1
        return await super().apply(*ops, durable=durable)


def client(**quotas: int) -> ClientConfig:
    return ClientConfig("c", "digest", "p", Quotas(**quotas))


async def test_requests_that_arrive_during_a_write_are_counted_by_one_write() -> None:
    clock = ManualClock(start=START)
    store = _CountingStore(clock)
    tracker = QuotaTracker(store, clock=clock)
    c = client(requests_per_minute=5)
    store.gate = asyncio.Event()
    calls = [asyncio.ensure_future(tracker.count(c)) for _ in range(8)]
    await asyncio.sleep(0)  # every call has arrived; the first one's write is waiting on the gate
    store.gate.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert outcomes[:5] == [None] * 5
    assert all(isinstance(o, QuotaExceeded) for o in outcomes[5:])
    assert store.writes == 2  # the first request's write, then one for the seven that waited
    assert (await tracker.usage(c))["requests_per_minute"] == 5


async def test_a_stale_count_conflicts_and_is_read_again() -> None:
    clock = ManualClock(start=START)
    store = MemoryStore(clock=clock)
    one, two = QuotaTracker(store, clock=clock), QuotaTracker(store, clock=clock)
    c = client(monthly_attempts=3)
    await one.count(c, request=False, submission=True)  # one remembers version 1
    await two.count(c, request=False, submission=True)
    await two.count(c, request=False, submission=True)  # the store is at version 3
    with pytest.raises(QuotaExceeded, match="monthly_attempts limit of 3"):
        await one.count(c, request=False, submission=True)  # its write conflicts; it reads, then refuses
    record = await store.get("quota", "c")
    assert record is not None and record.version == 3 and record.data["month_used"] == 3


async def test_conflicts_without_end_are_a_store_error() -> None:
    clock = ManualClock(start=START)

    class Busy(MemoryStore):
        async def apply(self, *ops: Any, durable: bool = True) -> list[Any]:
            raise ConflictError("quota", "c", 0, 1)

    with pytest.raises(Exception, match="kept changing"):
        await QuotaTracker(Busy(clock=clock), clock=clock).count(client(requests_per_minute=1))


async def test_max_active_jobs_counts_only_the_clients_own_jobs(tmp_path: Path) -> None:
    clients = tmp_path / "clients.toml"
    clients.write_text(
        "[plans.one]\nmax_active_jobs = 1\n\n"
        '[small]\ntoken = "small-token"\nplan = "one"\n\n'
        '[other]\ntoken = "other-token"\nplan = "one"\n'
    )
    clock = ManualClock(start=START)
    async with running_stack(
        engine_on(MemoryStorage(clock=clock), clock), clients_config_path=clients
    ) as stack:
        small = httpx.AsyncClient(base_url=stack.url, headers={"X-Client-Token": "small-token"})
        other = httpx.AsyncClient(base_url=stack.url, headers={"X-Client-Token": "other-token"})
        async with small, other:
            # Given a job of "small" still active (no worker takes it)
            assert (await submit(small)).status_code == 202
            # Then its second one is refused, naming the quota
            refused = await submit(small)
            assert refused.status_code == 429 and refused.json()["field"] == "max_active_jobs"
            # But another client on the same plan still has its own allowance
            assert (await submit(other)).status_code == 202
            assert (await submit(other)).status_code == 429
