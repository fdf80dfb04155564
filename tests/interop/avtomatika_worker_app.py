"""An unmodified ``avtomatika-worker`` 1.0b20 worker, run with the peer venv's python by the interop tests.

Written only against ``avtomatika_worker`` (no podium import), the way an Avtomatika user writes a worker.
Configured by the environment: ``WORKER_ID``, ``ORCHESTRATOR_URL``, ``WORKER_TOKEN`` (and the SDK's
timing variables). Skills:

- ``video_transcoding``: reports progress, returns ``{"output_path", "duration"}``;
- ``strict_output``: declares an output schema and returns data that breaks it when asked to;
- ``file_analysis``: the README's fan-out recipe's skill, returns ``{"file", "words"}``;
- ``slow``: waits until cancelled (to test cancellation through heartbeats).
"""

import asyncio

from avtomatika_worker import Worker

worker = Worker(worker_type="interop-worker", max_concurrent_tasks=4)


@worker.skill("video_transcoding")
async def transcode(params, send_progress, task_id, job_id):
    await send_progress(task_id, job_id, 50, "half way")
    path = params.get("path") or params.get("input_path")  # the README's recipe sends input_path
    return {"status": "success", "data": {"output_path": path + ".mp4", "duration": 95}}


@worker.skill(
    "strict_output",
    output_schema={"type": "object", "required": ["count"], "properties": {"count": {"type": "integer"}}},
)
async def strict_output(params):
    return {"status": "success", "data": {"count": params.get("count", "not a number")}}


@worker.skill("file_analysis")
async def file_analysis(params):
    return {"status": "success", "data": {"file": params["file"], "words": len(params["file"])}}


@worker.skill("slow")
async def slow(params):
    await asyncio.sleep(60)
    return {"status": "success", "data": {}}


if __name__ == "__main__":
    worker.run()
