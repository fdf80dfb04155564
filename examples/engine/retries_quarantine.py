"""Retries and quarantine: transient errors are retried with exponential backoff; a job whose task keeps
failing (or fails permanently) is quarantined. Runs on a virtual clock, so the backoff takes no real time.

Run: python examples/engine/retries_quarantine.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from podium.clock import ManualClock
from podium.engine import (
    ActionFactory,
    Blueprint,
    EngineEvent,
    InProcessWorker,
    OrchestratorEngine,
    TaskError,
)
from podium.engine.config import Config
from podium.engine.storage import MemoryStorage

bp = Blueprint("fetch")


@bp.handler(is_start=True)
async def start(initial_data: dict[str, Any], actions: ActionFactory) -> None:
    actions.dispatch_task("download", {"url": initial_data["url"]}, transitions={"success": "done"})


@bp.handler(is_end=True)
async def done() -> None: ...


worker = InProcessWorker("downloader")


@worker.skill("download")
async def download(params: dict[str, Any], attempt: int) -> dict[str, Any]:
    if params["url"].startswith("flaky") and attempt < 3:
        raise TaskError("TRANSIENT_ERROR", f"timeout on attempt {attempt}")
    if params["url"].startswith("down"):
        raise TaskError("TRANSIENT_ERROR", "host unreachable")
    if params["url"].startswith("forbidden"):
        raise TaskError("PERMANENT_ERROR", "403")
    return {"status": "success", "data": {"bytes": 1024}}


async def run() -> dict[str, str]:
    clock = ManualClock()
    engine = OrchestratorEngine(
        MemoryStorage(clock=clock),
        Config(JOB_MAX_RETRIES=3, RETRY_BACKOFF_BASE_S=2.0),
        serve_http=False,  # in-process only: no HTTP API
    )
    engine.register_blueprint(bp)
    engine.add_worker(worker)
    retries: asyncio.Queue[float] = asyncio.Queue()
    engine.subscribe(lambda ev: retries.put_nowait(ev.data["delay_s"]) if ev.type == "task_retry" else None)
    out: dict[str, str] = {}

    def log(ev: EngineEvent) -> None:
        if ev.type == "task_retry":
            print(f"  retry {ev.data['attempt']} in {ev.data['delay_s']} s: {ev.data['error']['message']}")

    engine.subscribe(log)
    async with engine:
        for url in ("flaky://a", "down://b", "forbidden://c"):
            job_id = await engine.create_job("fetch", {"url": url})
            waiter = asyncio.ensure_future(engine.wait_for_job(job_id))
            while not waiter.done():
                # move virtual time forward by each backoff as it is scheduled
                get = asyncio.ensure_future(retries.get())
                finished, _ = await asyncio.wait(
                    {waiter, get}, timeout=10, return_when=asyncio.FIRST_COMPLETED
                )
                if get in finished:
                    await clock.advance(get.result())
                else:
                    get.cancel()
                    if not finished:
                        raise TimeoutError(url)
            job = waiter.result()
            out[url] = job.status
            print(f"{url}: {job.status} {job.error['code'] if job.error else ''}")
    return out


def main() -> dict[str, str]:
    return asyncio.run(run())


if __name__ == "__main__":
    main()
