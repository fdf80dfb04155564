"""Rate limits per identity and operation class, counted in the store (several instances share them)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from podium.clock import ManualClock
from podium.ops import RateLimited, RateLimiter, RateLimits
from podium.server import ServerSettings, create_app
from podium.server.ratelimit import operation_class
from podium.store import MemoryStore
from podium.testing import EngineHarness

LIMITS = RateLimits(limit=10, heartbeat_limit=20, poll_limit=6, period_s=60.0)


async def granted(limiter: RateLimiter, n: int, *key: str) -> int:
    ok = 0
    for _ in range(n):
        try:
            await limiter.check(*key)
            ok += 1
        except RateLimited:
            pass
    return ok


async def test_each_class_has_its_limit_and_the_window_rolls_over() -> None:
    clock = ManualClock(6_000.0 + 15)  # 15 s into a window
    limiter = RateLimiter(MemoryStore(clock=clock), LIMITS, clock=clock)
    assert await granted(limiter, 30, "worker", "w1", "poll") == 6
    assert await granted(limiter, 30, "worker", "w1", "heartbeat") == 20
    assert await granted(limiter, 30, "worker", "w1", "other") == 10
    assert await granted(limiter, 30, "worker", "w2", "poll") == 6  # another identity has its own budget
    with pytest.raises(RateLimited) as info:
        await limiter.check("worker", "w1", "poll")
    assert info.value.retry_after_s == 45.0 and info.value.limit == 6
    assert info.value.body()["detail"] == {
        "worker": "w1",
        "class": "poll",
        "limit": 6,
        "period_s": 60.0,
        "retry_after_s": 45.0,
    }
    assert await limiter.usage("worker", "w1", "poll") == 6
    await clock.advance(45)
    assert await granted(limiter, 30, "worker", "w1", "poll") == 6


async def test_instances_on_one_store_share_one_budget() -> None:
    clock = ManualClock(6_000.0)
    store = MemoryStore(clock=clock)
    a, b = RateLimiter(store, LIMITS, clock=clock), RateLimiter(store, LIMITS, clock=clock)
    total = 0
    for _ in range(50):  # alternate between the two instances
        total += await granted(a, 1, "client", "c", "other") + await granted(b, 1, "client", "c", "other")
    assert total == 10
    assert await store.get("ratelimit", "client:c:other") is not None


async def test_concurrent_requests_never_pass_the_limit() -> None:
    clock = ManualClock(6_000.0)
    store = MemoryStore(clock=clock)
    limiters = [RateLimiter(store, RateLimits(limit=100), clock=clock) for _ in range(3)]

    async def one(i: int) -> bool:
        try:
            await limiters[i % 3].check("client", "c", "other")
            return True
        except RateLimited:
            return False

    results = await asyncio.gather(*(one(i) for i in range(400)))
    assert sum(results) <= 100
    assert sum(results) >= 80  # reservations held by one instance are lost to the others only at the end


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="poll_limit"):
        RateLimits(poll_limit=0)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("PATCH", "/_worker/workers/w1", "heartbeat"),
        ("DELETE", "/_worker/workers/w1", "other"),
        ("GET", "/_worker/workers/w1/tasks/next", "poll"),
        ("POST", "/_worker/tasks/result", "other"),
        ("POST", "/_worker/workers/register", "other"),
    ],
)
def test_operation_classes(method: str, path: str, expected: str) -> None:
    assert operation_class(method, path) == expected


async def test_the_server_answers_429_with_retry_after_and_counts_it() -> None:
    clock = ManualClock(6_000.0)
    async with EngineHarness(clock=clock) as h:
        settings = ServerSettings(
            client_token="ct",
            global_worker_token="wt",
            rate_limiting_enabled=True,
            rate_limit_poll_limit=3,
            rate_limit_heartbeat_limit=4,
            rate_limit_limit=5,
        )
        app = create_app(h.engine, settings, manage_engine=False)
        await app.state.podium.start()
        try:
            transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://podium") as http:
                worker = {"X-Worker-ID": "w1", "X-Worker-Token": "wt"}
                polls = [
                    (await http.get("/_worker/workers/w1/tasks/next", headers=worker)).status_code
                    for _ in range(5)
                ]
                # w1 is not registered: the route says 404, and the request counts
                assert polls == [404, 404, 404, 429, 429]
                refused = await http.get("/_worker/workers/w1/tasks/next", headers=worker)
                assert refused.headers["retry-after"] == "60"
                body: dict[str, Any] = refused.json()
                assert set(body) <= {"error", "field", "detail"} and "rate limit exceeded" in body["error"]
                assert body["detail"]["class"] == "poll" and body["detail"]["limit"] == 3
                # bad credentials are the routes' business (401), and spend nobody's budget
                bad = {"X-Worker-ID": "w2", "X-Worker-Token": "nope"}
                assert {
                    (await http.get("/_worker/workers/w2/tasks/next", headers=bad)).status_code
                    for _ in range(5)
                } == {401}
                # a client's requests: 5 a minute, then 429; public routes are not limited
                client = {"X-Client-Token": "ct"}
                codes = [(await http.get("/api/v1/jobs/nope", headers=client)).status_code for _ in range(7)]
                assert codes == [404] * 5 + [429] * 2
                for _ in range(10):
                    assert (await http.get("/_public/health")).status_code == 200
                metrics = (await http.get("/_public/metrics")).text
                assert 'orchestrator_ratelimit_blocked_total{kind="worker",op_class="poll"} 3.0' in metrics
                assert 'orchestrator_ratelimit_blocked_total{kind="client",op_class="other"} 2.0' in metrics
                # the 429 and its body are in the OpenAPI schema of the routes it can answer
                spec = (await http.get("/_public/openapi.json")).json()
                for path, method in (
                    ("/_worker/workers/{worker_id}/tasks/next", "get"),
                    ("/api/v1/jobs/{job_id}", "get"),
                ):
                    answer = spec["paths"][path][method]["responses"]["429"]
                    assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
                # the next window grants again
                await clock.advance(60)
                assert (await http.get("/api/v1/jobs/nope", headers=client)).status_code == 404
        finally:
            await app.state.podium.stop()


def test_avtomatika_environment_names_configure_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from podium.server.ratelimit import limiter_from_settings

    assert limiter_from_settings(MemoryStore(), ServerSettings(), None) is None  # off unless asked
    for name, value in {
        "RATE_LIMITING_ENABLED": "true",
        "RATE_LIMIT_LIMIT": "7",
        "RATE_LIMIT_POLL_LIMIT": "3",
        "RATE_LIMIT_HEARTBEAT_LIMIT": "9",
        "RATE_LIMIT_PERIOD": "30",
    }.items():
        monkeypatch.setenv(name, value)
    limiter = limiter_from_settings(MemoryStore(), ServerSettings(), None)
    assert limiter is not None
    assert limiter.limits == RateLimits(limit=7, heartbeat_limit=9, poll_limit=3, period_s=30.0)
