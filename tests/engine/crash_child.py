"""Child process for test_crash_recovery: runs an engine on a sqlite file (or a store URL such as
``postgresql://...``) until it is SIGKILLed.

Usage: python crash_child.py DB_PATH|STORE_URL N_JOBS [READY_AFTER] — creates N jobs, runs them, prints READY once
it completed READY_AFTER tasks (default: a third of them), and keeps running (the parent kills it mid-flight).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from podium.engine import ActionFactory, Blueprint, Config, EngineEvent, InProcessWorker, OrchestratorEngine
from podium.engine.storage import SQLiteStorage
from podium.store import Store, open_store


def blueprint() -> Blueprint:
    bp = Blueprint("crashy")

    @bp.handler(is_start=True)
    async def start(initial_data: dict[str, Any], actions: ActionFactory) -> None:
        actions.dispatch_task("double", {"i": initial_data["i"]}, transitions={"success": "mid"})

    @bp.handler
    async def mid(a: int, actions: ActionFactory) -> None:
        actions.dispatch_task("inc", {"a": a}, transitions={"success": "end"})

    @bp.handler(is_end=True)
    async def end() -> None: ...

    return bp


def worker() -> InProcessWorker:
    w = InProcessWorker("crash-worker", capacity=16)
    w.add_skill("double", lambda params: {"a": params["i"] * 2})
    w.add_skill("inc", lambda params: {"b": params["a"] + 1})
    return w


def config(**overrides: Any) -> Config:
    return Config(
        **{"JOB_LEASE_S": 1.0, "TASK_LEASE_S": 1.0, "EXECUTOR_MAX_CONCURRENT_JOBS": 32, **overrides}
    )


def store(target: str) -> Store:
    """A sqlite file path, or any store URL."""
    return open_store(target) if "://" in target else SQLiteStorage(target, synchronous="NORMAL")


async def main(path: str, n: int, ready_after: int | None = None) -> None:
    engine = OrchestratorEngine(store(path), config(), serve_http=False)
    engine.register_blueprint(blueprint())
    engine.add_worker(worker())
    done = 0
    ready = asyncio.Event()
    threshold = (2 * n) // 3 if ready_after is None else ready_after

    def on(ev: EngineEvent) -> None:
        nonlocal done
        if ev.type == "task_completed":
            done += 1
            if done >= threshold:
                ready.set()

    engine.subscribe(on)
    await engine.storage.open()
    await asyncio.gather(*(engine.create_job("crashy", {"i": i}) for i in range(n)))
    await engine.start()
    await ready.wait()
    print("READY", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None))
