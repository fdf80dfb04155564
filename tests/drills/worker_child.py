"""A drill's remote worker: podium's worker SDK against ``ORCHESTRATOR_URL`` (``WORKER_ID`` names it).

Each task takes a few milliseconds of simulated work so that a kill lands with tasks in flight.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from podium.worker import TaskContext, Worker

WORK_S = float(os.environ.get("DRILL_WORK_S", "0.2"))
worker = Worker(capacity=4)


@worker.task("double")
async def double(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    await asyncio.sleep(WORK_S)  # the work itself
    return {"a": params["i"] * 2}


@worker.task("inc")
async def inc(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    await asyncio.sleep(WORK_S)
    return {"b": params["a"] + 1}


async def main() -> None:
    """Start (registered once this returns), say READY, and drain on SIGTERM."""
    await worker.start()
    loop = asyncio.get_running_loop()
    draining: list[asyncio.Task[None]] = []
    loop.add_signal_handler(signal.SIGTERM, lambda: draining.append(loop.create_task(worker.drain())))
    print("READY", flush=True)
    await worker.wait_stopped()


if __name__ == "__main__":
    asyncio.run(main())
