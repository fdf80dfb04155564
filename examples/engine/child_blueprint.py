"""Child blueprints: run_blueprint starts a child job; the parent resumes with the child's result.

Run: python examples/engine/child_blueprint.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from podium.engine import ActionFactory, Blueprint, OrchestratorEngine
from podium.engine.storage import MemoryStorage

checksum = Blueprint("checksum", input_schema={"type": "object", "required": ["text"]})


@checksum.handler(is_start=True)
async def compute(text: str, state_history: dict[str, Any], actions: ActionFactory) -> None:
    state_history["done"] = {"checksum": sum(map(ord, text)) % 997}
    actions.go_to("done")


@checksum.handler(is_end=True)
async def done() -> None: ...


upload = Blueprint("upload")


@upload.handler(is_start=True)
async def start(initial_data: dict[str, Any], actions: ActionFactory) -> None:
    actions.run_blueprint(
        "checksum", {"text": initial_data["text"]}, transitions={"success": "store", "failure": "reject"}
    )


@upload.handler(is_end=True)
async def store(checksum: int) -> None:  # the child's result was merged into state_history
    print(f"stored with checksum {checksum}")


@upload.handler(is_end=True)
async def reject() -> None:
    print("rejected")


async def run() -> dict[str, Any]:
    engine = OrchestratorEngine(MemoryStorage(), serve_http=False)  # in-process only: no HTTP API
    engine.register_blueprint(checksum)
    engine.register_blueprint(upload)
    async with engine:
        job = await engine.wait_for_job(await engine.create_job("upload", {"text": "podium"}), timeout_s=10)
        children = await engine.list_jobs(blueprint="checksum")
    print(f"parent {job.status} in {job.state}; child {children[0].job_id} {children[0].status}")
    return {"state": job.state, "checksum": job.state_history["checksum"]}


def main() -> dict[str, Any]:
    return asyncio.run(run())


if __name__ == "__main__":
    main()
