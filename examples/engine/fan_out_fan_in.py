"""Fan-out/fan-in: dispatch_parallel to several workers, then one aggregator state.

Run: python examples/engine/fan_out_fan_in.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from podium.engine import ActionFactory, Blueprint, InProcessWorker, OrchestratorEngine
from podium.engine.storage import MemoryStorage

bp = Blueprint("word_count")


@bp.handler(is_start=True)
async def split(initial_data: dict[str, Any], actions: ActionFactory) -> None:
    tasks = [{"task_type": "count_words", "params": {"text": chunk}} for chunk in initial_data["chunks"]]
    actions.dispatch_parallel(tasks=tasks, aggregate_into="combine")


@bp.aggregator
async def combine(
    aggregation_results: dict[str, Any], state_history: dict[str, Any], actions: ActionFactory
) -> None:
    state_history["total_words"] = sum(r["data"]["words"] for r in aggregation_results.values())
    actions.go_to("report")


@bp.handler(is_end=True)
async def report(total_words: int) -> None:
    print(f"total words: {total_words}")


async def run() -> int:
    engine = OrchestratorEngine(MemoryStorage(), serve_http=False)  # in-process only: no HTTP API
    engine.register_blueprint(bp)
    for n in range(3):  # three workers share the queue
        w = InProcessWorker(f"counter-{n}", capacity=2)
        w.add_skill("count_words", lambda params: {"words": len(params["text"].split())})
        engine.add_worker(w)
    chunks = ["the quick brown fox", "jumps over", "the lazy dog", "again and again"]
    async with engine:
        job = await engine.wait_for_job(
            await engine.create_job("word_count", {"chunks": chunks}), timeout_s=10
        )
    return int(job.state_history["total_words"])


def main() -> int:
    return asyncio.run(run())


if __name__ == "__main__":
    main()
