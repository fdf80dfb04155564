"""uvicorn's httptools protocol, with the writes of one event-loop step sent together.

uvicorn writes a response's status line and headers, then its body, with two ``transport.write`` calls;
with uvloop each is a ``send`` system call (and usually a TCP segment of its own). About a sixth of the
server's CPU under load went to those two calls. :class:`CoalescingHttpToolsProtocol` hands uvicorn a
transport that gathers what is written during one step of the event loop and sends it with one write at
the end of that step (``loop.call_soon``), or as soon as the response is complete (uvicorn's
``on_response_complete``, called right after the last body write): a complete response leaves in one system
call in the step that finished it, not a loop turn later (on a busy loop a turn is milliseconds: a durable
result's answer would wait for it after its fsync), and a streamed one still leaves as it is produced
(each chunk at the end of the step that wrote it). Closing, aborting and switching protocols flush first,
so nothing is reordered or lost.

It also answers a request as it is parsed, when the app it serves can (an ``answer_now(path, headers)``
method returning a 200's JSON body, or ``None``: a job's status the store knows without a read,
:meth:`podium.server.app._Front.answer_now`): no task, no ASGI messages, the same bytes uvicorn would write.
Only a plain keep-alive HTTP/1.1 ``GET`` with no body, no request before it still being answered, nothing
paused, is asked; everything else (and every refusal) goes the usual way. The answer is made then and
written in the loop's next round of callbacks (``call_soon``), in turn with the tasks of the requests read
with it: written at once, status polls answered in the I/O phase went ahead of every result and submission
of the turn, and jobs took longer (the bench's poll client: fewer jobs/s, more polls per job).

Two per-request costs of uvicorn's protocol are cut, with what a client sees unchanged: the keep-alive
timer is one timer per connection, moved on lazily (uvicorn cancels one and arms a new one, a libuv timer
each, for every request; here a request only notes when the connection went idle, and a timer that comes
due early arms itself again for what is left), and a request's ASGI scope is built only for a request that
takes the usual way (uvicorn builds it as each request begins).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["CoalescingTransport", "http_protocol"]

log = logging.getLogger("podium.server")

AnswerNow = Callable[[str, list[tuple[bytes, bytes]]], bytes | None]


class CoalescingTransport:
    """An ``asyncio.Transport`` proxy whose writes of one loop step go out as one write."""

    __slots__ = ("_buffer", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._buffer: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._buffer:
            self._loop.call_soon(self.flush)
        self._buffer.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Send what was written (a no-op when nothing is waiting or the transport is closing)."""
        buffer = self._buffer
        if not buffer:
            return
        self._buffer = []
        if self._transport.is_closing():
            return
        self._transport.write(buffer[0] if len(buffer) == 1 else b"".join(buffer))

    def send(self, data: bytes) -> None:
        """Write ``data`` after what is waiting, all of it now, in one write (for a complete response: no
        flush is scheduled for it)."""
        if self._buffer:
            self._buffer.append(bytes(data))
            self.flush()
        elif not self._transport.is_closing():
            self._transport.write(data)

    def is_closing(self) -> bool:  # asked for every response: not through __getattr__ (an exception first)
        return self._transport.is_closing()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self._transport.set_protocol(protocol)

    def abort(self) -> None:
        self._buffer = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause/resume_reading, ...
        return getattr(self._transport, name)


def http_protocol() -> Any:
    """uvicorn's ``http=`` argument: the coalescing httptools protocol, or ``"auto"`` without httptools."""
    try:
        import httptools
        from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
    except ImportError:  # httptools is optional: uvicorn falls back to h11
        return "auto"
    ok = STATUS_LINE[200]

    seen: list[tuple[bytes, bytes]] | None = None  # uvicorn's default headers (renewed each second) ...
    head = b""  # ... and a 200's status line with them, as uvicorn writes them

    def answer_head(default_headers: list[tuple[bytes, bytes]]) -> bytes:
        nonlocal seen, head
        if default_headers is not seen:
            content = [ok]
            for name, value in default_headers:
                content += [name.lower(), b": ", value, b"\r\n"]
            seen, head = default_headers, b"".join(content)
        return head

    class CoalescingHttpToolsProtocol(HttpToolsProtocol):
        _answer_now: AnswerNow | None = None
        _answer: bytes | None = None  # the body of the request being parsed, answered at its end
        _answers = 0  # answers made, still to be written
        _closing = False  # shut down while answers were still to be written: close after the last
        _idle_until: float | None = None  # when an idle connection is closed (None: a request is under way)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            wrapped: Any = CoalescingTransport(transport, self.loop)
            super().connection_made(wrapped)
            self._answer_now = getattr(self.app, "answer_now", None)

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            self._idle_until = None
            timer, self.timeout_keep_alive_task = self.timeout_keep_alive_task, None
            if timer is not None:
                timer.cancel()

        # --- the keep-alive timer: one per connection, moved on lazily ----------------------------------

        def _unset_keepalive_if_required(self) -> None:
            self._idle_until = None  # the timer, when it comes due, finds the connection busy and lapses

        def _arm_keep_alive(self) -> None:
            """The connection is idle: close it after ``timeout_keep_alive`` s unless a request comes."""
            self._idle_until = until = self.loop.time() + self.timeout_keep_alive
            if self.timeout_keep_alive_task is None:
                self.timeout_keep_alive_task = self.loop.call_at(until, self._keep_alive_due)

        def _keep_alive_due(self) -> None:
            self.timeout_keep_alive_task = None
            until = self._idle_until
            if until is None:
                return  # busy: armed again when its response is complete
            if self.loop.time() < until:  # idle again since, later: wait for what is left
                self.timeout_keep_alive_task = self.loop.call_at(until, self._keep_alive_due)
                return
            self._idle_until = None
            self.timeout_keep_alive_handler()

        # --- the parser's callbacks ------------------------------------------------------------------

        def on_message_begin(self) -> None:
            # what uvicorn's does, but the scope: built in on_headers_complete, for the usual way only
            self.url = b""
            self.expect_100_continue = False
            self.headers = []

        def _begin_scope(self) -> None:
            """uvicorn's ``on_message_begin``, for its scope: the request's URL and headers are kept."""
            url, headers, expect = self.url, self.headers, self.expect_100_continue
            super().on_message_begin()
            self.url, self.headers, self.expect_100_continue = url, headers, expect
            self.scope["headers"] = headers

        def on_headers_complete(self) -> None:
            answer_now = self._answer_now
            cycle, parser = self.cycle, self.parser
            if (
                answer_now is not None
                and (cycle is None or cycle.response_complete)
                and not self.pipeline
                and parser.get_method() == b"GET"
                and parser.get_http_version() == "1.1"
                and parser.should_keep_alive()
                and not parser.should_upgrade()
                and not self.expect_100_continue
                and self.limit_concurrency is None
                and not self.access_log
                and not self.root_path
                and not self.flow.write_paused
                and not self._closing
            ):
                path = httptools.parse_url(self.url).path
                if path.isascii() and b"%" not in path:
                    try:
                        self._answer = answer_now(path.decode("ascii"), self.headers)
                    except Exception:  # answered the usual way, which reports what went wrong
                        log.exception("answering GET %r at once failed", path)
                    if self._answer is not None:
                        return  # no cycle: answered when the message ends (it has no body)
            self._begin_scope()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            body = self._answer
            if body is None:
                super().on_message_complete()
                return
            self._answer = None
            self._answers += 1
            self.loop.call_soon(self._write_answer, body)

        def _write_answer(self, body: bytes) -> None:
            self._answers -= 1
            cycle = self.cycle
            idle = cycle is None or cycle.response_complete  # no request after it answered the usual way
            last = self._closing and not self._answers and idle
            # what uvicorn writes for ``http.response.start`` (its default headers first) and the body,
            # sent now (every way on from here flushes)
            response = b"".join(
                (
                    answer_head(self.server_state.default_headers),
                    b"content-length: %d\r\ncontent-type: application/json\r\n" % len(body),
                    b"connection: close\r\n\r\n" if last else b"\r\n",
                    body,
                )
            )
            transport = self.transport
            if isinstance(transport, CoalescingTransport):
                transport.send(response)
            else:
                transport.write(response)
            if last:
                transport.close()
            if idle:
                self.on_response_complete()
            else:  # the request after it arms the keep-alive timer when it is answered
                self.server_state.total_requests += 1

        def shutdown(self) -> None:
            if not self._answers:
                super().shutdown()
                return
            self._closing = True  # the last answer closes the connection, as uvicorn closes after a response
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                cycle.keep_alive = False

        def on_response_complete(self) -> None:
            # the response's last write was just made: send it now (the step's scheduled flush finds
            # nothing left), then start a pipelined request or arm the keep-alive timer (uvicorn's own,
            # but for that timer)
            transport = self.transport
            if isinstance(transport, CoalescingTransport):
                transport.flush()
            self.server_state.total_requests += 1
            if transport.is_closing():
                return
            self._idle_until = None
            self.flow.resume_reading()
            if self.pipeline:
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)
            else:
                self._arm_keep_alive()

    return CoalescingHttpToolsProtocol
