"""Every log line about a job or task carries its id, including lines the user's own code writes."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from podium.engine import ActionFactory, Blueprint, Config, InProcessWorker, OrchestratorEngine
from podium.engine.storage import MemoryStorage
from podium.log import configure_logging


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    configure_logging(fmt="json", stream=out, level="INFO")
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_handler_and_task_log_lines_name_their_job_and_task(log_lines: io.StringIO) -> None:
    user = logging.getLogger("user.code")
    bp = Blueprint("logged")

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        user.info("start handler")
        actions.dispatch_task("work", {}, transitions={"success": "end"})

    @bp.handler(is_end=True)
    async def end() -> None:
        user.info("end handler")

    def work() -> dict[str, Any]:
        user.info("task body")
        return {"ok": True}

    engine = OrchestratorEngine(MemoryStorage(), Config(), serve_http=False)
    engine.register_blueprint(bp)
    engine.add_worker(InProcessWorker("w1", skills={"work": work}))
    async with engine:
        job_id = await engine.create_job("logged", {})
        assert (await engine.wait_for_job(job_id, timeout_s=10)).status == "finished"

    lines = {
        d["message"]: d
        for d in map(json.loads, log_lines.getvalue().splitlines())
        if d["logger"] == "user.code"
    }
    assert lines["start handler"]["job_id"] == job_id
    assert lines["end handler"]["job_id"] == job_id
    assert lines["task body"]["job_id"] == job_id and lines["task body"]["worker_id"] == "w1"
    assert len(lines["task body"]["task_id"]) == 26
