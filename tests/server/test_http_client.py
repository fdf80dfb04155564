"""podium.wire.http.HttpClient (webhooks, worker SDK): timeouts, cancellation, JSON bodies."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from podium.wire import codec as wire_json
from podium.wire.http import HttpClient, HttpTimeout

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(handle: Handler) -> AsyncIterator[str]:
    """Serve ``handle`` per connection on a loopback port; yield the base URL. On exit, close each
    connection and wait for its handler, so nothing outlives the test's loop."""
    handlers: list[asyncio.Task[None]] = []

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                await handle(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await asyncio.wait_for(asyncio.gather(*handlers, return_exceptions=True), 5)


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """A server that reads requests and never answers; the event is set once a request arrived."""
    arrived = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        arrived.set()
        await reader.read()  # until the client hangs up

    async with serving(handle) as url:
        yield url, arrived


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[str]:
    """A keep-alive server answering each request with its own body."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            body = await reader.readexactly(length)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )

    async with serving(handle) as url:
        yield url


async def test_no_answer_within_the_timeout_is_http_timeout_and_leaves_the_task_uncancelled() -> None:
    async with silent_server() as (url, _), HttpClient(url) as http:
        with pytest.raises(HttpTimeout, match=r"no answer within 0\.05 s"):
            await http.post("/hook", json={"x": 1}, timeout_s=0.05)
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
        await asyncio.sleep(0)  # no cancellation left pending on this task


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    async with silent_server() as (url, arrived), HttpClient(url) as http:
        request = asyncio.ensure_future(http.post("/hook", json={}, timeout_s=30))
        await asyncio.wait_for(arrived.wait(), 5)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request


async def test_json_bodies_round_trip() -> None:
    body = {"text": "größe ✓", "n": 2**70, "f": 1.5, "nested": [{"a": None}]}
    async with echo_server() as url, HttpClient(url) as http:
        response = await http.post("/echo", json=body)
    assert response.json() == body
    assert wire_json.dumps({"a": "é"}) == '{"a":"é"}'.encode()
    with pytest.raises(ValueError):
        wire_json.loads(b"{not json")


@contextlib.asynccontextmanager
async def scripted_server(*answers: bytes) -> AsyncIterator[str]:
    """Each connection reads one request and writes the next answer (in pieces, to test reassembly);
    an answer ending in ``b"<close>"`` closes the connection after it."""
    queue = list(answers)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while queue:
            await reader.readuntil(b"\r\n\r\n")
            answer = queue.pop(0)
            close = answer.endswith(b"<close>")
            answer = answer.removesuffix(b"<close>")
            for i in range(0, len(answer), 7):
                writer.write(answer[i : i + 7])
                await writer.drain()
            if close:
                return

    async with serving(handle) as url:
        yield url


async def test_chunked_and_read_to_close_bodies_and_no_body_statuses() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4;ext=1\r\n{"a"\r\n3\r\n:1}\r\n0\r\nX-Trailer: t\r\n\r\n'
    )
    no_body = b"HTTP/1.1 204 No Content\r\n\r\n"
    to_close = b'HTTP/1.0 200 OK\r\n\r\n{"b":2}<close>'
    async with scripted_server(chunked, no_body, to_close) as url, HttpClient(url) as http:
        first = await http.get("/")
        second = await http.get("/")  # the same keep-alive connection
        third = await http.get("/")
    assert first.json() == {"a": 1} and first.headers["transfer-encoding"] == "chunked"
    assert second.status_code == 204 and second.content == b""
    assert third.json() == {"b": 2}


async def test_a_keep_alive_connection_closed_by_the_server_is_retried_on_a_new_one() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    # the first connection answers once and closes (without saying so); the retry gets a new one
    async with scripted_server(ok + b"<close>", ok) as url, HttpClient(url) as http:
        assert (await http.get("/")).json() == {}
        assert (await http.get("/")).json() == {}


async def test_a_host_name_idna_cannot_encode_is_an_http_error_not_a_crash() -> None:
    # A webhook URL's host with a 64-character label: the resolver's IDNA encoding raises UnicodeError, which
    # the caller (webhook delivery) must see as a failed delivery like any unreachable host.
    from podium.wire.http import HttpError

    http = HttpClient()
    try:
        with pytest.raises(HttpError, match="cannot connect"):
            await http.post(f"https://{'0' * 64}.example/hook", json={"a": 1}, timeout_s=5)
    finally:
        await http.aclose()
