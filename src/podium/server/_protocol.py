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
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["CoalescingTransport", "http_protocol"]


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
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools is optional: uvicorn falls back to h11
        return "auto"

    class CoalescingHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            wrapped: Any = CoalescingTransport(transport, self.loop)
            super().connection_made(wrapped)

        def on_response_complete(self) -> None:
            # the response's last write was just made: send it now (the step's scheduled flush finds
            # nothing left), then let uvicorn start a pipelined request or arm the keep-alive timer
            transport = self.transport
            if isinstance(transport, CoalescingTransport):
                transport.flush()
            super().on_response_complete()

    return CoalescingHttpToolsProtocol
