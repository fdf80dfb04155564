"""A podium server on a loopback port around a real engine, plus blueprints the server tests share."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podium.engine import OrchestratorEngine
from podium.engine.blueprint import Blueprint
from podium.engine.storage import MemoryStorage
from podium.server import RunningServer, ServerSettings, start_server
from podium.testing import EngineHarness

CLIENT_TOKEN = "client-secret"
WORKER_TOKEN = "worker-secret"

TRANSCODE_INPUT = {
    "type": "object",
    "required": ["path"],
    "properties": {"path": {"type": "string"}, "size": {"type": "integer", "minimum": 0}},
}


def transcode_blueprint() -> Blueprint:
    bp = Blueprint(
        "transcode", api_endpoint="/jobs/transcode", api_version="v1", input_schema=TRANSCODE_INPUT
    )

    @bp.handler(is_start=True)
    async def start(initial_data: dict[str, Any], actions: Any) -> None:
        actions.dispatch_task(
            "video_transcoding",
            {"path": initial_data["path"]},
            transitions={"success": "publish", "failure": "broken"},
        )

    @bp.handler
    async def publish(actions: Any) -> None:
        actions.go_to("finished")

    @bp.handler(is_end=True)
    async def finished(state_history: dict[str, Any]) -> None:
        return None

    @bp.handler(is_end=True)
    async def broken() -> None:
        return None

    return bp


def approval_blueprint() -> Blueprint:
    bp = Blueprint("review", api_endpoint="/jobs/review")  # unversioned: /api/jobs/review

    @bp.handler(is_start=True)
    async def ask(actions: Any) -> None:
        actions.await_human_approval(message="ok?", transitions={"approved": "done", "rejected": "refused"})

    @bp.handler(is_end=True)
    async def done() -> None:
        return None

    @bp.handler(is_end=True)
    async def refused() -> None:
        return None

    return bp


@dataclass
class Stack:
    engine: OrchestratorEngine
    server: RunningServer
    settings: ServerSettings

    @property
    def url(self) -> str:
        return self.server.url


def make_engine(**config: Any) -> OrchestratorEngine:
    harness = EngineHarness(
        MemoryStorage(), blueprints=[transcode_blueprint(), approval_blueprint()], **config
    )
    return harness.engine


@contextlib.asynccontextmanager
async def running_stack(
    engine: OrchestratorEngine | None = None, *, port: int = 0, tmp_path: Path | None = None, **settings: Any
) -> AsyncIterator[Stack]:
    engine = engine or make_engine()
    values: dict[str, Any] = {
        "api_host": "127.0.0.1",
        "api_port": port,
        "client_token": CLIENT_TOKEN,
        "global_worker_token": WORKER_TOKEN,
        "worker_poll_timeout_s": 5.0,
        "webhook_backoff_s": 0.01,
        **settings,
    }
    cfg = ServerSettings(**values)
    server = await start_server(engine, cfg)
    try:
        yield Stack(engine, server, cfg)
    finally:
        await server.stop()
