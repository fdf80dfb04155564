"""The coalescing transport: writes of one loop step leave together, in order; close flushes first."""

from __future__ import annotations

import asyncio
from typing import Any

from podium.server._protocol import CoalescingTransport, http_protocol


class _Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:  # flow control: a pipelined request pauses reading until its turn
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


async def test_writes_of_one_step_leave_as_one() -> None:
    raw = _Recorder()
    t = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"HTTP/1.1 200 OK\r\n\r\n")
    t.write(b"")
    t.write(b"body")
    assert raw.writes == []
    await asyncio.sleep(0)
    assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    t.write(b"next")
    t.close()  # flushes before closing
    assert raw.writes[-1] == b"next" and raw.closed
    assert t.get_extra_info("peername") == ("127.0.0.1", 1)
    await asyncio.sleep(0)
    assert len(raw.writes) == 2


def test_protocol_class() -> None:
    assert http_protocol() != "auto"  # httptools is installed in dev


async def test_a_complete_response_leaves_in_the_step_that_completed_it() -> None:
    """uvicorn's httptools protocol on the coalescing transport: the response's header and body writes go
    out as one write as soon as its last body write is made, not a loop turn later (a durable result's
    answer must not wait for another turn of a busy loop after its fsync)."""
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    raw = _Recorder()
    seen_at_completion: list[list[bytes]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        seen_at_completion.append(list(raw.writes))  # no await since the last write: still this step

    config = Config(app, http=http_protocol(), lifespan="off")
    config.load()
    protocol = http_protocol()(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(raw)
    protocol.data_received(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    for _ in range(10):
        if seen_at_completion:
            break
        await asyncio.sleep(0)
    assert len(seen_at_completion) == 1
    (written,) = seen_at_completion[0]  # one write: status line, headers and body together
    assert written.startswith(b"HTTP/1.1 200 OK\r\n") and written.endswith(b"\r\n\r\nok")
    protocol.connection_lost(None)


async def test_the_keep_alive_timeout_counts_from_the_last_response() -> None:
    """One keep-alive timer per connection, moved on lazily (not a new one per request): a connection that
    keeps sending requests stays open past the timeout counted from its first response, and once idle it
    is closed the timeout after its last response, not before."""
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    loop = asyncio.get_running_loop()
    raw = _Recorder()
    closed_at: list[float] = []
    raw.close = lambda: closed_at.append(loop.time())  # type: ignore[method-assign]
    answered: list[float] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        answered.append(loop.time())

    timeout_s = 1.0
    config = Config(app, http=http_protocol(), lifespan="off", timeout_keep_alive=timeout_s)
    config.load()
    protocol = http_protocol()(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(raw)
    # Given requests 0.25 s apart for 1.5 s: never idle for the timeout
    first = loop.time()
    while loop.time() - first < 1.5 * timeout_s:
        protocol.data_received(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        while len(answered) < len(raw.writes) or not raw.writes:
            await asyncio.sleep(0)
        await asyncio.sleep(0.25)
    assert not closed_at and len(answered) >= 5
    # When it is idle, then it is closed once the timeout has passed since its last response
    for _ in range(400):
        if closed_at:
            break
        await asyncio.sleep(0.01)
    assert closed_at and closed_at[0] >= answered[-1] + timeout_s
    protocol.connection_lost(None)


async def test_send_writes_what_waits_then_its_data_in_one_write_and_schedules_nothing() -> None:
    raw = _Recorder()
    t = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.send(b"alone")
    assert raw.writes == [b"alone"]  # at once, nothing left for a flush
    t.write(b"first,")
    t.send(b"then")
    assert raw.writes == [b"alone", b"first,then"]  # in order, one write
    await asyncio.sleep(0)
    assert len(raw.writes) == 2  # the flush scheduled by write found nothing
    raw.closed = True
    t.send(b"late")
    assert len(raw.writes) == 2  # a closing transport takes nothing, as flush does


async def test_pipelined_requests_are_answered_in_order() -> None:
    """Two requests in one packet, both the usual way: the second starts when the first's response is
    complete (the protocol's own ``on_response_complete``), and the answers leave in request order."""
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    raw = _Recorder()
    done = asyncio.Event()
    paths: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        paths.append(scope["path"])
        body = scope["path"].encode()
        headers = [(b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        if len(paths) == 2:
            done.set()

    config = Config(app, http=http_protocol(), lifespan="off")
    config.load()
    protocol = http_protocol()(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(raw)
    protocol.data_received(b"GET /first HTTP/1.1\r\nhost: x\r\n\r\nGET /second HTTP/1.1\r\nhost: x\r\n\r\n")
    await asyncio.wait_for(done.wait(), 5)
    for _ in range(10):
        await asyncio.sleep(0)
    out = b"".join(raw.writes)
    assert paths == ["/first", "/second"]
    assert out.count(b"HTTP/1.1 200 OK") == 2
    assert out.index(b"/first") < out.index(b"/second")
    protocol.connection_lost(None)
