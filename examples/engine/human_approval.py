"""Human approval: the job parks in waiting_for_approval until someone approves or rejects (from Python here;
over HTTP once the server lands).

Run: python examples/engine/human_approval.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from podium.engine import ActionFactory, Blueprint, EngineEvent, OrchestratorEngine
from podium.engine.storage import MemoryStorage

bp = Blueprint("deploy")


@bp.handler(is_start=True)
async def start(initial_data: dict[str, Any], actions: ActionFactory) -> None:
    actions.await_human_approval(
        integration="python",
        message=f"deploy {initial_data['version']} to production?",
        transitions={"approved": "deploy", "rejected": "abandon"},
    )


@bp.handler(is_end=True)
async def deploy(approver: str) -> None:
    print(f"deploying, approved by {approver}")


@bp.handler(is_end=True)
async def abandon(reason: str) -> None:
    print(f"abandoned: {reason}")


async def run() -> list[str]:
    engine = OrchestratorEngine(MemoryStorage(), serve_http=False)  # in-process only: no HTTP API
    engine.register_blueprint(bp)
    waiting: asyncio.Queue[str] = asyncio.Queue()

    def on_event(ev: EngineEvent) -> None:
        if ev.type == "job_waiting" and ev.status == "waiting_for_approval" and ev.job_id:
            waiting.put_nowait(ev.job_id)

    engine.subscribe(on_event)
    async with engine:
        good = await engine.create_job("deploy", {"version": "1.2.0"})
        bad = await engine.create_job("deploy", {"version": "0.0.1-broken"})
        for _ in range(2):
            job_id = await asyncio.wait_for(waiting.get(), 10)
            view = await engine.get_job(job_id)
            print(f"{job_id}: {view.status}: {view.waiting and view.waiting['message']}")
            if job_id == good:
                await engine.approve(job_id, {"approver": "ann"})
            else:
                await engine.reject(job_id, {"reason": "version looks broken"})
        states = [(await engine.wait_for_job(j, timeout_s=10)).state for j in (good, bad)]
    return states


def main() -> list[str]:
    return asyncio.run(run())


if __name__ == "__main__":
    main()
