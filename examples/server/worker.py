"""The example's remote worker, written with podium's worker SDK.

Run with ``ORCHESTRATOR_URL=http://127.0.0.1:8080 WORKER_TOKEN=worker-secret python examples/server/worker.py``
(``WORKER_ID`` names it, default ``example-worker``); SIGTERM drains it (running tasks finish, then it deregisters).
"""

import os
from typing import Any

from podium.worker import TaskContext, Worker

worker = Worker(worker_id=os.environ.get("WORKER_ID", "example-worker"), capacity=4)


@worker.task(
    "video_transcoding",
    output_schema={
        "type": "object",
        "required": ["output_path"],
        "properties": {"output_path": {"type": "string"}},
    },
)
async def transcode(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    await ctx.progress(50, "encoding")
    return {"output_path": params["path"] + ".mp4"}


if __name__ == "__main__":
    worker.run()
