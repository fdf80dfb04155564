"""Server cost of one status poll answered at once, through podium's HTTP protocol, without sockets.

A ``podium serve``-like app on durable SQLite (``synchronous=FULL``) gets one job of ``bench_server``'s
blueprint (submitted through the protocol, as the poll client does), then ``N`` ``GET /api/v1/jobs/{id}``
requests with the poll client's headers are fed to one connection of the protocol
(:func:`podium.server._protocol.http_protocol`) over a transport that keeps what is written; each is
answered before the next (the loop runs between). Prints the CPU per poll (``time.process_time``). What
it leaves out: the socket's system calls (``recv``, ``send``) and the event loop's polling. For
instructions, steadier than time on a shared machine, run it under cachegrind twice and take the
difference::

    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null python bench/poll_path.py 1000
    valgrind ... python bench/poll_path.py 3000     # (I refs(3000) - I refs(1000)) / 2000 per poll

    python bench/poll_path.py [N] [--usual]

``--usual``: every poll takes the usual way (the job's view is not known at once), as a poll the store
cannot answer without a read does.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from podium.engine.blueprint import Blueprint  # noqa: E402
from podium.server import ServerSettings  # noqa: E402
from podium.server._protocol import http_protocol  # noqa: E402
from podium.server.app import create_app  # noqa: E402
from podium.store import SQLiteStore  # noqa: E402
from podium.testing import EngineHarness  # noqa: E402

TOKEN = "bench-client-token"


def bench_blueprint() -> Blueprint:
    """bench_server's blueprint: start -> dispatch_task(noop) -> finished."""
    bp = Blueprint("bench", api_endpoint="/jobs/bench", api_version="v1")

    @bp.handler(is_start=True)
    async def start(actions: Any) -> None:
        actions.dispatch_task("noop", {}, transitions={"success": "finished"})

    @bp.handler(is_end=True)
    async def finished() -> None:
        pass

    return bp


class MemoryTransport:
    """A transport for the HTTP protocol that keeps what is written (no socket)."""

    def __init__(self) -> None:
        self.data: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.data.append(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None: ...

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name in ("peername", "sockname") else default

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


async def _answered(transport: MemoryTransport) -> bytes:
    while not transport.data:
        await asyncio.sleep(0)
    data, transport.data = b"".join(transport.data), []
    return data


async def measure(n: int, usual: bool) -> float:
    """CPU seconds per poll over ``n`` polls."""
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    with tempfile.TemporaryDirectory() as tmp:
        engine = EngineHarness(SQLiteStore(Path(tmp) / "podium.db"), blueprints=[bench_blueprint()]).engine
        os.environ["CLIENT_TOKEN"] = TOKEN
        app: Any = create_app(engine, ServerSettings(global_worker_token="w"))
        async with app.router.lifespan_context(app):
            config = Config(app, http=http_protocol(), lifespan="off", access_log=False, proxy_headers=False)
            config.load()
            state = ServerState()
            state.default_headers = [(b"date", b"Mon, 07 Dec 2026 00:00:00 GMT"), (b"server", b"uvicorn")]
            transport = MemoryTransport()
            protocol = http_protocol()(config=config, server_state=state, app_state={})
            protocol.connection_made(transport)
            body = b'{"initial_data": {}}'
            head = f"POST /api/v1/jobs/bench HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Client-Token: {TOKEN}\r\n"
            protocol.data_received(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            job_id = json.loads((await _answered(transport)).partition(b"\r\n\r\n")[2])["job_id"]
            await engine.get_job(job_id)  # on disk: known at once from here on
            get = f"GET /api/v1/jobs/{job_id} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Client-Token: {TOKEN}\r\n\r\n"
            request = get.encode()
            if usual:
                engine.jobs.peek_job = lambda job_id: None  # type: ignore[method-assign]
            for _ in range(50):  # warm up
                protocol.data_received(request)
                await _answered(transport)
            started = time.process_time()
            for _ in range(n):
                protocol.data_received(request)
                await _answered(transport)
            return (time.process_time() - started) / n


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    usual = "--usual" in sys.argv
    n = int(args[0]) if args else 20_000
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        per_poll = asyncio.run(measure(n, usual))
    else:
        per_poll = uvloop.run(measure(n, usual))
    print(f"{'usual way' if usual else 'answered at once'}: {per_poll * 1e6:.1f} us CPU per poll ({n} polls)")


if __name__ == "__main__":
    main()
