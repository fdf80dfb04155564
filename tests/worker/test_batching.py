"""podium.worker against a podium server (batch extension) and against a plain RXON server (fallback)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from podium.client import AsyncJobClient
from podium.server import ServerSettings, create_app
from podium.wire import rxon
from podium.worker import Worker
from tests.server.harness import CLIENT_TOKEN, WORKER_TOKEN, make_engine, running_stack
from tests.server.loopback import serve_app


def noop_worker(url: str, **kw: Any) -> Worker:
    worker = Worker(
        worker_id="bw",
        server_url=url,
        token=WORKER_TOKEN,
        heartbeat_interval_s=0.2,
        poll_timeout_s=2.0,
        backoff_initial_s=0.02,
        **kw,
    )

    @worker.task("video_transcoding")
    async def transcode(params: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"output_path": params["path"] + ".mp4"}

    return worker


async def run_jobs(url: str, n: int) -> list[str]:
    async with AsyncJobClient(url, token=CLIENT_TOKEN) as jobs:
        ids = await asyncio.gather(*(jobs.submit("transcode", {"path": f"/p{i}"}) for i in range(n)))
        views = await asyncio.gather(*(jobs.wait(i, timeout_s=20) for i in ids))
    return [v.status for v in views]


async def test_many_jobs_through_the_batch_routes_each_result_applied_once() -> None:
    async with running_stack() as stack, noop_worker(stack.url, capacity=4) as worker:
        assert await run_jobs(stack.url, 40) == ["finished"] * 40
        assert worker._batch_routes and worker.completed == 40
        history = [await stack.engine.job_history(j.job_id) for j in await stack.engine.list_jobs(limit=100)]
        assert all(sum(h.event == "task_completed" for h in entries) == 1 for entries in history)
        assert not any(h.event == "result_ignored" for entries in history for h in entries)


class PlainRxon:
    """The podium app as an RXON server without podium's extensions (as Avtomatika's server is)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == rxon.ENDPOINT_TASK_RESULTS:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        if scope["type"] == "http" and scope["path"].endswith("/tasks/next"):
            query = [p for p in scope["query_string"].split(b"&") if not p.startswith(b"max_tasks=")]
            scope = {**scope, "query_string": b"&".join(query)}
        await self.app(scope, receive, send)


@contextlib.asynccontextmanager
async def plain_server() -> AsyncIterator[str]:
    settings = ServerSettings(
        client_token=CLIENT_TOKEN, global_worker_token=WORKER_TOKEN, worker_poll_timeout_s=2.0
    )
    app = create_app(make_engine(), settings)
    async with serve_app(PlainRxon(app)) as url:
        yield url


async def test_falls_back_to_the_plain_protocol() -> None:
    async with plain_server() as url, noop_worker(url, capacity=3) as worker:
        assert await run_jobs(url, 10) == ["finished"] * 10
        assert not worker._batch_routes and worker.completed == 10
