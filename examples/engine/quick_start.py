"""Quick start: a blueprint that hands one task to an in-process worker, on the durable sqlite store.

Run: python examples/engine/quick_start.py
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from podium.engine import ActionFactory, Blueprint, InProcessWorker, OrchestratorEngine
from podium.engine.config import Config
from podium.engine.storage import SQLiteStorage

bp = Blueprint("greeting", api_endpoint="/jobs/greeting")


@bp.handler(is_start=True)
async def start(initial_data: dict[str, Any], actions: ActionFactory) -> None:
    actions.dispatch_task("greet", {"name": initial_data["name"]}, transitions={"success": "end"})


@bp.handler(is_end=True)
async def end(greeting: str) -> None:  # injected from the worker's result
    print(f"worker said: {greeting}")


worker = InProcessWorker("local-worker", capacity=4)


@worker.skill("greet")
async def greet(params: dict[str, Any], progress: Any) -> dict[str, Any]:
    await progress(50, "thinking")
    return {"status": "success", "data": {"greeting": f"hello, {params['name']}"}}


async def run(db: Path) -> dict[str, Any]:
    engine = OrchestratorEngine(SQLiteStorage(db), Config(SERVE_HTTP=False))  # in-process: no HTTP API
    engine.register_blueprint(bp)
    engine.add_worker(worker)
    async with engine:
        job_id = await engine.create_job("/jobs/greeting", {"name": "podium"})
        job = await engine.wait_for_job(job_id, timeout_s=30)
        print(f"job {job.job_id}: {job.status}, result={job.result!r}")
        print(engine.blueprint_graph("greeting"))
        return job.to_dict()


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(run(Path(tmp) / "podium.db"))


if __name__ == "__main__":
    main()
