"""Just enough HTTP/1.1 over asyncio streams for the server benchmark's client, webhook receiver and stub.

Keep-alive, ``Content-Length`` bodies, chunked bodies on the receiving side. The same code drives every
system, and it costs little CPU per request, so the driver does not cap a server on these 2-core machines
(httpx plus a uvicorn receiver in the driver held Avtomatika to ~136 jobs/s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

__all__ = ["RawClient", "Receiver", "read_message", "receiver_server", "serve"]

Handler = Callable[[bytes, bytes, dict[bytes, bytes], bytes], Awaitable[tuple[int, bytes]]]
"""``(method, target, headers, body) -> (status, JSON body)`` for :func:`serve`."""


async def read_message(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """Read one HTTP/1.1 message: (start line, lower-cased headers, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    else:
        body = b""
    return lines[0], headers, body


class RawClient:
    """Keep-alive HTTP/1.1 connections to one server; each request borrows an idle one."""

    def __init__(self, base: str, headers: dict[str, str], connections: int) -> None:
        host, _, port = base.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.head = f"Host: {host}:{port}\r\n{extra}"
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        self.connections = connections
        self.opened: list[asyncio.StreamWriter] = []
        self.requests = 0

    async def __aenter__(self) -> RawClient:
        for _ in range(self.connections):
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self.opened.append(writer)
            self.idle.put_nowait((reader, writer))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self.opened:
            writer.close()

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        reader, writer = await self.idle.get()
        self.requests += 1
        try:
            if body is None:
                writer.write(f"{method} {path} HTTP/1.1\r\n{self.head}\r\n".encode())
            else:
                writer.write(
                    f"{method} {path} HTTP/1.1\r\n{self.head}Content-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
            status_line, _, payload = await read_message(reader)
        except (OSError, asyncio.IncompleteReadError):
            writer.close()  # the server dropped it: a fresh connection takes its place
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self.opened.append(writer)
            raise
        finally:
            self.idle.put_nowait((reader, writer))
        return int(status_line.split(b" ", 2)[1]), payload

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        return await self.request("POST", path, body)

    async def get(self, path: str) -> tuple[int, bytes]:
        return await self.request("GET", path)


_REASONS = {200: b"OK", 202: b"Accepted", 204: b"No Content", 404: b"Not Found"}


async def serve(handler: Handler, host: str, port: int) -> asyncio.Server:
    """A keep-alive HTTP/1.1 server answering every request with ``handler``'s JSON."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                start, headers, body = await read_message(reader)
                method, target, _ = start.split(b" ", 2)
                status, payload = await handler(method, target, headers, body)
                head = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"OK"))
                if status == 204:
                    writer.write(head + b"\r\n")
                else:
                    writer.write(
                        head
                        + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(payload)
                        + payload
                    )
        except (
            asyncio.IncompleteReadError,
            ConnectionError,
            asyncio.CancelledError,
            asyncio.LimitOverrunError,
        ):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(connection, host, port)


class Receiver:
    """Counts ``job_*`` webhooks; lets the client wait for one job or for a number of them."""

    def __init__(self) -> None:
        self.finished: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Future[None]] = {}
        self.target = 0
        self.all_done = asyncio.Event()
        self.bad: list[dict[str, Any]] = []

    async def handle(
        self, method: bytes, target: bytes, headers: dict[bytes, bytes], raw: bytes
    ) -> tuple[int, bytes]:
        self.hook(json.loads(raw))
        return 200, b"{}"

    def hook(self, body: dict[str, Any]) -> None:
        if body.get("event") != "job_finished":
            self.bad.append(body)
        job_id = body["job_id"]
        self.finished[job_id] = time.perf_counter()
        fut = self.waiters.pop(job_id, None)
        if fut is not None and not fut.done():
            fut.set_result(None)
        if self.target and len(self.finished) >= self.target:
            self.all_done.set()

    async def wait_for(self, job_id: str, timeout_s: float) -> float:
        """When ``job_id``'s webhook arrived (``perf_counter``), waiting for it if need be."""
        if job_id not in self.finished:
            fut = asyncio.get_running_loop().create_future()
            self.waiters[job_id] = fut
            await asyncio.wait_for(fut, timeout_s)
        return self.finished[job_id]


@contextlib.asynccontextmanager
async def receiver_server() -> AsyncIterator[tuple[Receiver, str]]:
    """A :class:`Receiver` on a loopback port, and the URL to give as ``webhook_url``."""
    receiver = Receiver()
    server = await serve(receiver.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield receiver, f"http://127.0.0.1:{port}/hook"
    finally:
        server.close()
