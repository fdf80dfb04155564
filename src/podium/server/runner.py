"""Serve the app with uvicorn inside a running event loop (for ``podium serve``, tests and embedding)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from podium.engine.engine import OrchestratorEngine
from podium.server._protocol import http_protocol
from podium.server.app import create_app
from podium.server.settings import ServerSettings

__all__ = ["EmbeddedServer", "RunningServer", "start_server"]


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host (tests, embedding in an application)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(slots=True)
class RunningServer:
    """A uvicorn server started by :func:`start_server`; ``url`` is where it listens."""

    server: uvicorn.Server
    task: asyncio.Task[None]
    url: str
    app: Any

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Stop serving (the app's lifespan stops the engine it manages). Idempotent."""
        self.server.should_exit = True
        if not self.task.done():
            await asyncio.wait_for(asyncio.shield(self.task), timeout_s)

    async def wait(self) -> None:
        """Wait until the server stops (a signal when it installed handlers, or :meth:`stop`)."""
        await asyncio.shield(self.task)


async def start_server(
    engine: OrchestratorEngine,
    settings: ServerSettings | None = None,
    *,
    manage_engine: bool = True,
    install_signal_handlers: bool = False,
    log_level: str = "warning",
) -> RunningServer:
    """Build the app and serve it on ``settings.api_host:api_port`` (port 0: a free port) until stopped."""
    settings = settings or ServerSettings.load()
    app = create_app(engine, settings, manage_engine=manage_engine)
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_level=log_level,
        lifespan="on",
        access_log=False,
        proxy_headers=False,  # nothing here reads the client's address; saves a middleware per request
        http=http_protocol(),  # httptools, a response's header and body writes sent as one
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_s)),
    )
    server = uvicorn.Server(config) if install_signal_handlers else EmbeddedServer(config)
    task = asyncio.create_task(server.serve(), name="podium-server")
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the server stopped before it started")
        await asyncio.sleep(0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return RunningServer(server, task, f"http://{shown}:{port}", app)
