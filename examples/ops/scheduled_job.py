"""A scheduled job: ``schedules.toml`` run by the native scheduler over three simulated days.

The engine runs on a :class:`~podium.clock.ManualClock`, so three days across the change to summer time
take milliseconds; with the system clock the same code is what ``podium serve --schedules schedules.toml``
runs. Each occurrence's job id is derived from the schedule and the occurrence's time: several servers on
one store run it once.

Run: python examples/ops/scheduled_job.py
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from podium.clock import ManualClock
from podium.engine import ActionFactory, Blueprint, Config, InProcessWorker, OrchestratorEngine
from podium.ops import Scheduler
from podium.store import MemoryStore
from podium.testing import settle

BERLIN = ZoneInfo("Europe/Berlin")
HERE = Path(__file__).resolve().parent

bp = Blueprint("report")


@bp.handler(is_start=True)
async def start(initial_data: dict[str, Any], actions: ActionFactory) -> None:
    actions.dispatch_task("render", {"kind": initial_data["kind"]}, transitions={"success": "done"})


@bp.handler(is_end=True)
async def done() -> None: ...


worker = InProcessWorker("renderer", capacity=4)


@worker.skill("render")
async def render(params: dict[str, Any]) -> dict[str, Any]:
    return {"status": "success", "data": {"rendered": params["kind"]}}


async def run() -> dict[str, Any]:
    clock = ManualClock(datetime(2026, 3, 28, 0, 0, tzinfo=BERLIN).timestamp())  # Saturday, 00:00
    # Background loops tick on the clock: hour-long ticks keep three simulated days to a few hundred wake-ups.
    config = Config(SERVE_HTTP=False, EXECUTOR_POLL_WAIT_S=3600, RECOVERY_LOCK_TTL_S=7200)
    engine = OrchestratorEngine(MemoryStore(clock=clock), config)
    engine.register_blueprint(bp)
    engine.add_worker(worker)
    async with engine:
        scheduler = Scheduler.from_file(engine, HERE / "schedules.toml")
        await scheduler.start()
        for _ in range(3 * 24):  # three days, an hour at a time
            await clock.advance(3600)
            await settle(clock)
        listing = await scheduler.describe()
        await scheduler.stop()
        jobs = await engine.list_jobs(limit=1000)
    kinds = Counter(j.initial_data["kind"] for j in jobs)
    nightly = [
        datetime.fromtimestamp(j.created_at, BERLIN).strftime("%a %H:%M")
        for j in sorted(jobs, key=lambda j: j.created_at)
        if j.initial_data["kind"] == "nightly"
    ]
    for s in listing:
        print(f"{s['name']:15} {s['trigger']:22} last {s['last_run_at']}  next {s['next_run_at']}")
    print(f"jobs by kind: {dict(kinds)}; nightly runs: {nightly}")
    return {
        "kinds": dict(kinds),
        "nightly": nightly,
        "finished": sum(j.status == "finished" for j in jobs),
    }


def main() -> dict[str, Any]:
    return asyncio.run(run())


if __name__ == "__main__":
    main()
