"""The pull-worker SDK: a decorator-based async worker speaking the RXON protocol to a podium server.

::

    from podium.worker import Worker, TaskContext

    worker = Worker(worker_id="gpu-1", server_url="http://127.0.0.1:8080", token="...", capacity=4)

    @worker.task("video_transcoding")
    async def transcode(params: dict, ctx: TaskContext) -> dict:
        await ctx.progress(50, "half way")
        return {"output_path": "/videos/out.mp4"}

    worker.run()
"""

from __future__ import annotations

from podium.worker._sdk import TaskContext, TaskFailed, Worker, WorkerAuthError, WorkerState

__all__ = ["TaskContext", "TaskFailed", "Worker", "WorkerAuthError", "WorkerState"]
