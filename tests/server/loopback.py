"""Helpers for server tests: a real uvicorn server on a loopback port, in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from podium.server.runner import EmbeddedServer


@contextlib.asynccontextmanager
async def serve_app(app: Any, *, port: int = 0) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1 (a free port unless given); yield its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = EmbeddedServer(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.005)
        sock = server.servers[0].sockets[0]
        host, bound_port = sock.getsockname()[:2]
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
