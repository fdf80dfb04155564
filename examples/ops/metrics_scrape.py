"""A metrics scrape: a server on a loopback port runs jobs, then ``/_public/metrics`` is read as Prometheus would.

The engine's metrics come from its event stream (one subscriber); the server adds HTTP, worker and
rate-limit counters. ``docs/ops/grafana.json`` is a dashboard over them.

Run: python examples/ops/metrics_scrape.py
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from podium.engine import ActionFactory, Blueprint, Config, InProcessWorker, OrchestratorEngine, TaskError
from podium.server import ServerSettings, start_server
from podium.store import MemoryStore

CLIENT_TOKEN = "client-secret"

bp = Blueprint("thumbnail", api_endpoint="/jobs/thumbnail", api_version="v1")


@bp.handler(is_start=True)
async def start(initial_data: dict[str, Any], actions: ActionFactory) -> None:
    actions.dispatch_task("resize", initial_data, transitions={"success": "done", "failure": "broken"})


@bp.handler(is_end=True)
async def done() -> None: ...


@bp.handler(is_end=True)
async def broken() -> None: ...


worker = InProcessWorker("resizer", capacity=4)


@worker.skill("resize")
async def resize(params: dict[str, Any]) -> dict[str, Any]:
    if params.get("width", 0) <= 0:
        raise TaskError("INVALID_INPUT_ERROR", "width must be positive")
    return {"status": "success", "data": {"size": params["width"]}}


async def run() -> dict[str, float]:
    engine = OrchestratorEngine(MemoryStore(), Config(SERVE_HTTP=False))
    engine.register_blueprint(bp)
    engine.add_worker(worker)
    server = await start_server(engine, ServerSettings(api_port=0, client_token=CLIENT_TOKEN))
    try:
        async with httpx.AsyncClient(base_url=server.url, headers={"X-Client-Token": CLIENT_TOKEN}) as http:
            for width in (64, 128, 256, 0):  # the last one fails: its input is invalid
                job = (
                    await http.post("/api/v1/jobs/thumbnail", json={"initial_data": {"width": width}})
                ).json()
                await http.get(f"/api/v1/jobs/{job['job_id']}/wait", params={"timeout": 10})
            text = (await http.get("/_public/metrics")).text
    finally:
        await server.stop()
    wanted = {
        ("orchestrator_jobs_total", (("blueprint", "thumbnail"),)),
        ("orchestrator_jobs_failed_total", (("blueprint", "thumbnail"),)),
        ("podium_jobs_ended_total", (("blueprint", "thumbnail"), ("status", "finished"))),
        ("podium_task_run_seconds_count", (("status", "success"), ("task_type", "resize"))),
        ("orchestrator_task_queue_length", (("task_type", "resize"),)),
    }
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (sample.name, tuple(sorted(sample.labels.items()))) in wanted:
                found[sample.name] = sample.value
                print(f"{sample.name}{sample.labels} = {sample.value}")
    return found


def main() -> dict[str, float]:
    return asyncio.run(run())


if __name__ == "__main__":
    main()
