"""A lean HTTP/1.1 client for the SDKs and the server's webhooks: keep-alive pools of asyncio protocols
(responses parsed as their bytes arrive: no stream reader, one future per response).

httpx costs 0.2-0.4 ms of CPU per request in these processes (its pool, its models, anyio), which is
more than a worker spends on a small task. This client does only what the worker protocol and webhooks
need: JSON bodies, ``Content-Length`` or chunked responses, keep-alive connections per origin (HTTP and
HTTPS), a timeout per request, and one retry on a fresh connection when a reused keep-alive connection
turns out to have been closed by the server before it answered (every request it sends is idempotent
or de-duplicated by the server: results, heartbeats, webhooks).

Errors: everything that is not an HTTP answer raises :class:`HttpError` (:class:`HttpTimeout` for a
timeout); an answer of any status is a :class:`Response`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from podium.wire import codec

__all__ = ["HttpClient", "HttpError", "HttpTimeout", "Response"]

_NO_BODY_STATUSES = frozenset({204, 304})
_MAX_HEAD = 64 * 1024
_ORIGIN_CACHE = 1024


class HttpError(Exception):
    """The request got no HTTP answer: connection refused or reset, timeout, malformed response."""


class HttpTimeout(HttpError):
    """The request took longer than its timeout."""


@dataclass(slots=True)
class Response:
    status_code: int
    headers: dict[str, str]
    content: bytes

    def json(self) -> Any:
        """The body as JSON (``None`` for an empty body); ``ValueError`` if it is not JSON."""
        return codec.loads(self.content) if self.content else None

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class _Incomplete(ConnectionError):
    """The connection ended before a whole response came; ``partial``: whether any of it came."""

    def __init__(self, partial: bool) -> None:
        super().__init__("the connection closed before the whole response came")
        self.partial = partial


class _Conn(asyncio.Protocol):
    """One keep-alive connection, as a protocol: bytes are parsed as they arrive (no stream reader, no
    future per read), and the response resolves one future. One request at a time."""

    __slots__ = ("_buffer", "_head_only", "_waiter", "closed", "transport", "uses")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[Response, bool]] | None = None
        self._head_only = False
        self.closed = False
        self.uses = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is not None:
            self._parse(eof=False)
        elif len(self._buffer) > _MAX_HEAD:  # nobody asked: a misbehaving server
            self.close()

    def eof_received(self) -> bool:
        self.closed = True
        if self._waiter is not None:
            self._parse(eof=True)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._parse(eof=True)

    def _parse(self, *, eof: bool) -> None:
        waiter = self._waiter
        assert waiter is not None
        if waiter.done():
            return
        try:
            parsed = _parse_response(self._buffer, self._head_only, eof)
        except ValueError as exc:
            waiter.set_exception(exc)
            return
        if parsed is None:
            if eof:
                waiter.set_exception(_Incomplete(bool(self._buffer)))
            return
        response, keep, used = parsed
        del self._buffer[:used]
        waiter.set_result((response, keep and not self._buffer and not self.closed))

    async def exchange(self, data: bytes, head_only: bool) -> tuple[Response, bool]:
        """Send one request, wait for its response; also say whether the connection may be kept."""
        assert self.transport is not None
        self._buffer.clear()
        self._head_only = head_only
        waiter: asyncio.Future[tuple[Response, bool]] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        try:
            self.transport.write(data)
            if self.closed:
                self._parse(eof=True)
            return await waiter
        finally:
            self._waiter = None

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _parse_response(buffer: bytearray, head_only: bool, eof: bool) -> tuple[Response, bool, int] | None:
    """One response from the start of ``buffer``: ``(response, keep-alive, bytes used)``, or ``None`` while
    it is incomplete. A body without length or chunking runs to the end of the connection (``eof``)."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > _MAX_HEAD:
            raise ValueError("response head too large")
        return None
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    version, status_text = lines[0].split(" ", 2)[:2]
    status = int(status_text)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    keep = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
    start = end + 4
    if head_only or status in _NO_BODY_STATUSES or 100 <= status < 200:
        return Response(status, headers, b""), keep, start
    if "content-length" in headers:
        stop = start + int(headers["content-length"])
        if len(buffer) < stop:
            return None
        return Response(status, headers, bytes(buffer[start:stop])), keep, stop
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts: list[bytes] = []
        pos = start
        while True:
            line_end = buffer.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(bytes(buffer[pos:line_end]).split(b";")[0], 16)
            pos = line_end + 2
            if size == 0:
                while True:  # trailers, up to an empty line
                    line_end = buffer.find(b"\r\n", pos)
                    if line_end < 0:
                        return None
                    empty, pos = line_end == pos, line_end + 2
                    if empty:
                        return Response(status, headers, b"".join(parts)), keep, pos
            if len(buffer) < pos + size + 2:
                return None
            parts.append(bytes(buffer[pos : pos + size]))
            pos += size + 2
    if not eof:
        return None
    return Response(status, headers, bytes(buffer[start:])), False, len(buffer)


class _Pool:
    """Idle keep-alive connections to one origin, and how many are open."""

    __slots__ = ("free", "host", "host_header", "idle", "port", "ssl")

    def __init__(
        self, host: str, port: int, tls: ssl.SSLContext | None, host_header: str, limit: int
    ) -> None:
        self.host, self.port, self.ssl, self.host_header = host, port, tls, host_header
        self.idle: deque[_Conn] = deque()
        self.free = asyncio.Semaphore(limit)


def _origin(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return parts.scheme, parts.hostname, port, path


class HttpClient:
    """Keep-alive HTTP/1.1 client. ``base_url`` (optional) prefixes relative paths; ``headers`` go on
    every request. At most ``max_connections`` connections per origin; a request waits for one."""

    def __init__(
        self,
        base_url: str = "",
        *,
        headers: dict[str, str] | None = None,
        timeout_s: float = 10.0,
        max_connections: int = 16,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        if self.base_url:
            _origin(self.base_url)  # fail early on a bad URL
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self._headers = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._ssl = ssl_context
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._origins: dict[str, tuple[str, str, int, str]] = {}
        self._closed = False

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every idle connection; requests in flight finish on theirs. Idempotent."""
        self._closed = True
        for pool in self._pools.values():
            while pool.idle:
                pool.idle.popleft().close()

    def _pool(self, scheme: str, host: str, port: int) -> _Pool:
        key = (scheme, host, port)
        pool = self._pools.get(key)
        if pool is None:
            tls = (self._ssl or ssl.create_default_context()) if scheme == "https" else None
            default = 443 if scheme == "https" else 80
            host_header = host if port == default else f"{host}:{port}"
            pool = self._pools[key] = _Pool(host, port, tls, host_header, self.max_connections)
        return pool

    async def get(self, url: str, **kw: Any) -> Response:
        return await self.request("GET", url, **kw)

    async def post(self, url: str, **kw: Any) -> Response:
        return await self.request("POST", url, **kw)

    async def patch(self, url: str, **kw: Any) -> Response:
        return await self.request("PATCH", url, **kw)

    async def delete(self, url: str, **kw: Any) -> Response:
        return await self.request("DELETE", url, **kw)

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> Response:
        """Send one request; ``url`` is absolute or a path under ``base_url``."""
        if self._closed:
            raise HttpError("the client is closed")
        full = url if "://" in url else self.base_url + url
        origin = self._origins.get(full)
        if origin is None:  # a client asks few distinct URLs (its server's routes, webhook URLs)
            if len(self._origins) >= _ORIGIN_CACHE:
                self._origins.clear()
            origin = self._origins[full] = _origin(full)
        scheme, host, port, path = origin
        if params:
            path = f"{path}{'&' if '?' in path else '?'}{urlencode(params)}"
        body = content
        extra = self._headers
        if json is not None:
            body = codec.dumps(json)
            extra += "Content-Type: application/json\r\n"
        if headers:
            extra += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        pool = self._pool(scheme, host, port)
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {pool.host_header}\r\n{extra}"
            f"Content-Length: {len(body) if body else 0}\r\n\r\n"
        ).encode("latin-1")
        data = head + body if body else head
        # asyncio.timeout costs ~10 us a request on uvloop; one timer that cancels this task costs ~3 us.
        # The same semantics: our own cancellation becomes HttpTimeout, anyone else's stays a cancellation.
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = asyncio.get_running_loop().call_later(
            self.timeout_s if timeout_s is None else timeout_s, expire
        )
        try:
            response = await self._send(pool, data, method == "HEAD")
        except asyncio.CancelledError:
            if expired and task.uncancel() == 0:
                raise HttpTimeout(
                    f"{method} {url}: no answer within {timeout_s or self.timeout_s} s"
                ) from None
            raise
        finally:
            timer.cancel()
        if expired:  # the answer came in the same loop step as the timer: it counts, the cancel does not
            task.uncancel()
        return response

    async def _send(self, pool: _Pool, data: bytes, head_only: bool) -> Response:
        async with pool.free:
            for attempt in range(2):
                conn, reused = self._idle(pool), True
                if conn is None:
                    conn, reused = await self._connect(pool), False
                try:
                    response, keep = await conn.exchange(data, head_only)
                except (ConnectionError, OSError, ValueError, IndexError) as exc:
                    conn.close()
                    if reused and attempt == 0 and _nothing_read(exc):
                        continue  # the server closed an idle keep-alive connection: retry on a new one
                    raise HttpError(f"{type(exc).__name__}: {exc}") from None
                except BaseException:
                    conn.close()  # cancelled or timed out mid-response: the connection is unusable
                    raise
                if keep and not self._closed:
                    conn.uses += 1
                    pool.idle.append(conn)
                else:
                    conn.close()
                return response
        raise HttpError("unreachable")  # pragma: no cover

    @staticmethod
    def _idle(pool: _Pool) -> _Conn | None:
        while pool.idle:
            conn = pool.idle.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    @staticmethod
    async def _connect(pool: _Pool) -> _Conn:
        try:
            _, conn = await asyncio.get_running_loop().create_connection(
                _Conn, pool.host, pool.port, ssl=pool.ssl
            )
        except (
            OSError,
            UnicodeError,
        ) as exc:  # UnicodeError: a host name IDNA cannot encode (a label too long)
            raise HttpError(f"cannot connect to {pool.host}:{pool.port}: {exc}") from None
        return conn


def _nothing_read(exc: BaseException) -> bool:
    if isinstance(exc, _Incomplete):
        return not exc.partial
    return isinstance(exc, ConnectionError)
