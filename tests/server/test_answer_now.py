"""A job's status answered as its request is parsed (the HTTP protocol asks ``answer_now``): the same bytes
as the usual way, and the usual way for everything it does not answer (401, 404, quotas, rate limits)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from podium.engine import OrchestratorEngine
from podium.engine.storage import MemoryStorage
from podium.engine.storage.sqlite import SQLiteStorage
from podium.server import ServerSettings
from podium.server._protocol import http_protocol
from podium.server.app import create_app
from podium.store import Put, SQLiteStore
from podium.testing import EngineHarness
from tests.server.harness import CLIENT_TOKEN, approval_blueprint, running_stack, transcode_blueprint

OTHER_TOKEN = "other-secret"
CLIENTS = f"""
[default]
token = "{CLIENT_TOKEN}"

[other]
token = "{OTHER_TOKEN}"

[plans.counted]
requests_per_minute = 1000

[counted]
token = "counted-secret"
plan = "counted"
"""


def _engine(store: Any) -> OrchestratorEngine:
    return EngineHarness(store, blueprints=[transcode_blueprint(), approval_blueprint()]).engine


def _get(job_id: str, token: str | None = CLIENT_TOKEN, extra: str = "") -> bytes:
    auth = f"x-client-token: {token}\r\n" if token is not None else ""
    return f"GET /api/v1/jobs/{job_id} HTTP/1.1\r\nhost: t\r\n{auth}{extra}\r\n".encode()


def _without_date(response: bytes) -> bytes:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"date:")]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class _Transport:
    """What uvicorn's protocol writes to, kept."""

    def __init__(self) -> None:
        self.data = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name in ("peername", "sockname") else default

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class _Connection:
    """One connection of podium's HTTP protocol to the app, fed bytes by hand."""

    def __init__(self, app: Any) -> None:
        from uvicorn.config import Config
        from uvicorn.server import ServerState

        config = Config(app, http=http_protocol(), lifespan="off", access_log=False, proxy_headers=False)
        config.load()
        state = ServerState()
        state.default_headers = [(b"date", b"Mon, 07 Dec 2026 00:00:00 GMT"), (b"server", b"uvicorn")]
        self.transport = _Transport()
        self.protocol = http_protocol()(config=config, server_state=state, app_state={})
        self.protocol.connection_made(self.transport)

    def send(self, request: bytes) -> int:
        """Feed a request; how many tasks it started (none: answered as it was parsed)."""
        self.transport.data = b""
        before = set(self.protocol.tasks)
        self.protocol.data_received(request)
        return len(set(self.protocol.tasks) - before)

    async def answer(self, count: int = 1) -> bytes:
        """Wait for ``count`` complete responses (as written so far) and take them."""
        for _ in range(2000):
            if self.transport.data.count(b"HTTP/1.1 ") >= count and _complete(self.transport.data, count):
                break
            await asyncio.sleep(0.001)
        data, self.transport.data = self.transport.data, b""
        return data


def _complete(data: bytes, count: int) -> bool:
    rest = data
    for _ in range(count):
        head, sep, rest = rest.partition(b"\r\n\r\n")
        if not sep:
            return False
        length = int(
            next(v for k, _, v in (h.partition(b": ") for h in head.split(b"\r\n")) if k == b"content-length")
        )
        if len(rest) < length:
            return False
        rest = rest[length:]
    return True


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Any, OrchestratorEngine]]:
    clients = tmp_path / "clients.toml"
    clients.write_text(CLIENTS)
    engine = _engine(MemoryStorage())
    app = create_app(engine, ServerSettings(clients_config_path=clients, global_worker_token="w"))
    async with app.router.lifespan_context(app):
        yield app, engine


def _requests(app: Any, status: str) -> float:
    st = app.state.podium
    return float(st.metrics.http.requests("GET", "/api/v1/jobs/{job_id}", int(status)))


async def test_a_status_poll_is_answered_as_it_is_parsed_with_the_usual_bytes(
    served: tuple[Any, OrchestratorEngine],
) -> None:
    app, engine = served
    job_id = await engine.create_job("transcode", {"path": "/p"}, client=_client("default"))
    conn = _Connection(app)
    before = _requests(app, "200")
    assert conn.send(_get(job_id)) == 0  # no task: answered as it was parsed
    at_once = await conn.answer()
    assert at_once.startswith(b"HTTP/1.1 200 OK\r\n")
    assert _requests(app, "200") == before + 1
    # the usual way (a request with a body header is not answered at once) writes the same bytes
    assert conn.send(_get(job_id, extra="content-length: 0\r\n")) == 1
    usual = await conn.answer()
    assert _without_date(at_once) == _without_date(usual)
    assert _requests(app, "200") == before + 2
    head, _, body = at_once.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[1:] == [
        b"date: Mon, 07 Dec 2026 00:00:00 GMT",
        b"server: uvicorn",
        f"content-length: {len(body)}".encode(),
        b"content-type: application/json",
    ]
    view = await engine.get_job(job_id)
    assert httpx.Response(200, content=body).json()["status"] == view.status == "waiting_for_worker"
    # keep-alive: the next request on the connection is answered too, and two sent at once in order
    assert conn.send(_get(job_id) + _get(job_id)) == 0
    assert await conn.answer(2) == at_once + at_once
    # one answered the usual way right behind one answered at once: in order
    assert conn.send(_get(job_id) + _get(job_id, extra="content-length: 0\r\n")) == 1
    both = await conn.answer(2)
    assert _without_date(both) == _without_date(at_once + usual)
    assert not conn.transport.closed
    # shut down while an answer is still to be written: it is written, saying so, and the connection closed
    assert conn.send(_get(job_id)) == 0
    conn.protocol.shutdown()
    last = await conn.answer()
    assert last == at_once.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n", 1)
    assert conn.transport.closed


async def test_an_unchanged_job_is_answered_from_its_last_view_and_a_change_shows_at_once(
    served: tuple[Any, OrchestratorEngine],
) -> None:
    """Polls of a job that did not change reuse the view (and body) made for the first; the first poll after
    the job changed answers the change."""
    app, engine = served
    job_id = await engine.create_job("transcode", {"path": "/p"}, client=_client("default"))
    view = engine.jobs.peek_job(job_id)
    assert view is not None and engine.jobs.peek_job(job_id) is view  # unchanged: the same view
    conn = _Connection(app)
    assert conn.send(_get(job_id)) == 0
    first = await conn.answer()
    assert conn.send(_get(job_id)) == 0
    assert await conn.answer() == first
    await engine.cancel_job(job_id)
    changed = engine.jobs.peek_job(job_id)
    assert changed is not None and changed is not view and changed.version > view.version
    assert conn.send(_get(job_id)) == 0
    after = await conn.answer()
    body = after.partition(b"\r\n\r\n")[2]
    assert httpx.Response(200, content=body).json()["status"] == (await engine.get_job(job_id)).status
    assert after != first
    # the usual way writes the same bytes for the changed job
    assert conn.send(_get(job_id, extra="content-length: 0\r\n")) == 1
    assert _without_date(await conn.answer()) == _without_date(after)


async def test_refusals_take_the_usual_way(served: tuple[Any, OrchestratorEngine]) -> None:
    app, engine = served
    st = app.state.podium
    job_id = await engine.create_job("transcode", {"path": "/p"}, client=_client("default"))
    conn = _Connection(app)
    failures = st.metrics.auth_failures.labels("client")._value.get()
    for token, status, error in [
        (None, b"401", "missing X-Client-Token header"),
        ("wrong", b"401", "invalid X-Client-Token header"),
        (OTHER_TOKEN, b"404", f"job {job_id!r} not found"),  # another client's job
    ]:
        assert conn.send(_get(job_id, token)) == 1
        response = await conn.answer()
        assert response.startswith(b"HTTP/1.1 " + status), response
        assert httpx.Response(200, content=response.partition(b"\r\n\r\n")[2]).json() == {"error": error}
    assert st.metrics.auth_failures.labels("client")._value.get() == failures + 2  # each counted once
    assert conn.send(_get("no-such-job")) == 1
    assert (await conn.answer()).startswith(b"HTTP/1.1 404 ")
    # a client counted against quotas: the usual way counts the request
    assert conn.send(_get(job_id, "counted-secret")) == 1
    assert (await conn.answer()).startswith(b"HTTP/1.1 404 ")  # not its job
    counted = st.clients.authenticate("counted-secret")
    assert (await st.quotas.usage(counted))["requests_per_minute"] == 1
    # HTTP/1.0, or a connection to be closed: the usual way
    for request in (
        _get(job_id).replace(b"HTTP/1.1", b"HTTP/1.0"),
        _get(job_id, extra="connection: close\r\n"),
    ):
        assert conn.send(request) == 1
        response = await conn.answer()
        assert response.startswith(b"HTTP/1.1 200 OK") and b"connection: close" in response
        conn = _Connection(app)


async def test_a_rate_limited_server_answers_the_usual_way(tmp_path: Path) -> None:
    engine = _engine(MemoryStorage())
    settings = ServerSettings(client_token=CLIENT_TOKEN, global_worker_token="w", rate_limiting_enabled=True)
    app = create_app(engine, settings)
    async with app.router.lifespan_context(app):
        job_id = await engine.create_job("transcode", {"path": "/p"})
        conn = _Connection(app)
        assert conn.send(_get(job_id)) == 1
        assert (await conn.answer()).startswith(b"HTTP/1.1 200 OK")


async def test_sqlite_a_write_by_another_connection_is_what_the_next_poll_shows(tmp_path: Path) -> None:
    """On SQLite a poll answered at once shows the job as this process wrote it only while no other
    connection (another instance on the file) committed since: checked as the request is parsed."""
    path = tmp_path / "podium.db"
    engine = _engine(SQLiteStorage(path))
    async with (
        running_stack(engine) as stack,
        httpx.AsyncClient(base_url=stack.url, headers={"X-Client-Token": CLIENT_TOKEN}) as http,
    ):
        r = await http.post("/api/v1/jobs/transcode", json={"initial_data": {"path": "/p"}})
        job_id = r.json()["job_id"]
        first = await http.get(f"/api/v1/jobs/{job_id}")
        assert first.status_code == 200 and first.json()["status"] == "waiting_for_worker"
        app = stack.server.app
        token = [(b"x-client-token", CLIENT_TOKEN.encode())]
        assert app.answer_now(f"/api/v1/jobs/{job_id}", token) is not None  # known at once
        async with SQLiteStore(path) as other:
            rec = await other.get("job", job_id)
            assert rec is not None
            await other.apply(Put("job", job_id, {**rec.data, "progress": 0.5}, rec.version, "cancelled"))
        assert app.answer_now(f"/api/v1/jobs/{job_id}", token) is None  # another connection wrote
        again = await http.get(f"/api/v1/jobs/{job_id}")
        assert again.status_code == 200
        assert (again.json()["status"], again.json()["progress"]) == ("cancelled", 0.5)
        assert app.answer_now(f"/api/v1/jobs/{job_id}", token) is None  # read from the file now


def _client(name: str) -> Any:
    from podium.engine.context import ClientConfig

    return ClientConfig(token=name, plan="default", params={})
