"""The server's error table (podium.server.errors): each exception type's answer, looked up along the MRO."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from podium.engine import OrchestratorEngine
from podium.engine.errors import JobStateError
from podium.errors import ConfigError, PodiumError
from podium.server import ServerSettings, create_app
from podium.server._state import ServerState
from podium.server.errors import ERRORS, ApiError, answer
from podium.server.quotas import QuotaExceeded
from podium.server.security import ClientConfig
from tests.server.harness import CLIENT_TOKEN, WORKER_TOKEN, make_engine


@pytest.fixture
def st() -> ServerState:
    app = create_app(
        make_engine(),
        ServerSettings(client_token=CLIENT_TOKEN, global_worker_token=WORKER_TOKEN),
        manage_engine=False,
    )
    state: ServerState = app.state.podium
    return state


def answered(st: ServerState, exc: Exception) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    error = answer(st, exc)
    assert error is not None
    return error.status, error.body.model_dump(exclude_none=True), error.headers


CASES = [
    (ApiError(418, "teapot", field="pot"), 418, {"error": "teapot", "field": "pot"}),
    (JobStateError("job j is already finished"), 409, {"error": "job j is already finished"}),
    (
        JobStateError("job j: decision 'maybe' is not one of ['approved']"),
        409,
        {"error": "job j: decision 'maybe' is not one of ['approved']", "field": "decision"},
    ),
    (JobStateError("job j: wrong approval token"), 403, {"error": "job j: wrong approval token"}),
    (ConfigError("workers.toml: line 2: bad"), 400, {"error": "workers.toml: line 2: bad"}),
]


@pytest.mark.parametrize(("exc", "status", "body"), CASES, ids=lambda v: type(v).__name__)
def test_each_error_is_answered_by_its_rule(
    st: ServerState, exc: Exception, status: int, body: dict[str, Any]
) -> None:
    assert answered(st, exc)[:2] == (status, body)


def test_a_quota_is_a_429_with_retry_after_and_counted(st: ServerState) -> None:
    client = ClientConfig(name="small", token_hash="x", plan="tiny")
    status, body, headers = answered(st, QuotaExceeded(client, "requests_per_minute", 2, retry_after_s=1.2))
    assert status == 429 and body["field"] == "requests_per_minute" and body["detail"]["limit"] == 2
    assert headers == {"Retry-After": "2"}
    blocked = st.metrics.registry.get_sample_value(
        "podium_quota_blocked_total", {"quota": "requests_per_minute"}
    )
    assert blocked == 1.0


def test_the_lookup_walks_the_mro_and_leaves_the_rest_to_500(st: ServerState) -> None:
    class Narrower(JobStateError):
        pass

    assert answered(st, Narrower("job j is already finished"))[0] == 409
    assert answer(st, PodiumError("unexpected")) is None
    assert answer(st, RuntimeError("boom")) is None
    assert PodiumError not in ERRORS and Exception not in ERRORS


@contextlib.asynccontextmanager
async def asgi_client() -> AsyncIterator[tuple[OrchestratorEngine, httpx.AsyncClient]]:
    """The app of a started engine, called through httpx's ASGI transport."""
    engine = make_engine()
    app = create_app(engine, ServerSettings(client_token=CLIENT_TOKEN), manage_engine=False)
    await engine.start(serve_http=False)
    try:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://podium") as http:
            yield engine, http
    finally:
        await engine.stop()


async def test_the_table_is_installed_on_the_app_and_the_fast_routes() -> None:
    async with asgi_client() as (_, http):
        headers = {"X-Client-Token": CLIENT_TOKEN}
        created = await http.post(
            "/api/v1/jobs/transcode", headers=headers, json={"initial_data": {"path": "a"}}
        )
        job_id = created.json()["job_id"]
        # a FastAPI route: the engine's JobStateError goes through the table
        r = await http.post(f"/api/v1/jobs/{job_id}/approve", headers=headers)
        assert r.status_code == 409 and r.json() == {
            "error": f"job {job_id} is waiting_for_worker, not waiting for approval"
        }
        # the ASGI front: the same table answers
        r = await http.post("/api/v1/jobs/transcode", headers=headers, content=b" " * (16 * 1024 * 1024 + 1))
        assert r.status_code == 413 and r.json() == {
            "error": "the request body is larger than the limit of 16777216 bytes (MAX_BODY_BYTES)"
        }


async def test_values_no_store_holds_and_out_of_range_numbers_are_422s_naming_the_field() -> None:
    """Found by schemathesis: an integer beyond 64 bits in a job's data was a 500 (the store's encoder
    refused it mid-commit); unbounded numbers and a webhook URL without a host were taken. Each is now a 422
    naming the field, and nothing is written."""
    async with asgi_client() as (engine, http):
        headers = {"X-Client-Token": CLIENT_TOKEN, "Content-Type": "application/json"}
        cases = [
            (b'{"initial_data": {"path": "a", "n": [1, 18446744073709551617]}}', "initial_data.n.1"),
            (
                b'{"initial_data": {"path": "a"}, "max_transitions": 18446744073709551617}',
                "max_transitions",
            ),
            (b'{"initial_data": {"path": "a"}, "priority": 99999999999}', "priority"),
            (b'{"initial_data": {"path": "a"}, "dispatch_timeout": Infinity}', "dispatch_timeout"),
            (b'{"initial_data": {"path": "a"}, "result_timeout": 1e300}', "result_timeout"),
            (b'{"initial_data": {"path": "a"}, "webhook_url": "http://"}', "webhook_url"),
            (b'{"initial_data": {"path": "a"}, "webhook_url": "https://h\\u001fost/x"}', "webhook_url"),
        ]
        for body, field in cases:
            r = await http.post("/api/v1/jobs/transcode", headers=headers, content=body)
            assert r.status_code == 422, (body, r.text)
            assert r.json()["field"] == field, (body, r.json())
        assert await engine.list_jobs() == []
        # FastAPI's own refusals (a body that does not parse, an unknown route) in the API's error body
        r = await http.post("/api/v1/jobs/someone/approve", headers=headers, content=b"\xff{")
        assert r.status_code == 400 and set(r.json()) == {"error"}, r.text
        r = await http.get("/api/v1/no-such-route", headers=headers)
        assert r.status_code == 404 and set(r.json()) == {"error"}, r.text
