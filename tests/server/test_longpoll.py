"""A worker's long poll is answered by the write that dispatches a task (pushed, no store look-up), and
still by the store's own long poll for tasks that become due without one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from podium.engine.keys import task_queue
from podium.wire import rxon
from tests.server.harness import CLIENT_TOKEN, WORKER_TOKEN, Stack, make_engine, running_stack

CLIENT = {"X-Client-Token": CLIENT_TOKEN}
SKILL = "video_transcoding"


def worker_headers(worker_id: str) -> dict[str, str]:
    return {"X-Worker-Token": WORKER_TOKEN, "X-Worker-ID": worker_id}


async def register(http: httpx.AsyncClient, worker_id: str) -> None:
    body = {"worker_id": worker_id, "supported_skills": [{"name": SKILL}]}
    r = await http.post(rxon.ENDPOINT_REGISTER, json=body, headers=worker_headers(worker_id))
    assert r.status_code == 200, r.text


def waiting_polls(stack: Stack) -> list[Any]:
    """The long polls standing in the engine's dispatch for the skill's queue."""
    return list(stack.engine.dispatch.local.get(task_queue(SKILL), []))


async def until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.005)


def poll(http: httpx.AsyncClient, worker_id: str, timeout_s: float = 5.0) -> asyncio.Task[httpx.Response]:
    url = rxon.ENDPOINT_TASK_NEXT.format(worker_id=worker_id)
    return asyncio.ensure_future(
        http.get(url, params={"timeout": str(timeout_s)}, headers=worker_headers(worker_id))
    )


async def submit(http: httpx.AsyncClient, path: str = "/a") -> str:
    r = await http.post("/api/v1/jobs/transcode", json={"initial_data": {"path": path}}, headers=CLIENT)
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


async def test_a_waiting_poll_gets_the_task_the_dispatching_write_leases_to_it() -> None:
    async with running_stack() as stack, httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        await register(http, "w1")
        # Given a worker waiting in a long poll
        pending = poll(http, "w1")
        await until(lambda: len(waiting_polls(stack)) == 1)
        # When a job dispatches a task
        job_id = await submit(http)
        # Then the poll answers with it, the task is running for that worker, and the poll left the dispatch
        r = await pending
        assert r.status_code == 200, r.text
        task = r.json()
        assert task["job_id"] == job_id and task["type"] == SKILL and task["params"] == {"path": "/a"}
        view = await stack.engine.get_task(task["task_id"])
        assert view.status == "running" and view.worker_id == "w1"
        assert waiting_polls(stack) == []
        result = {"job_id": job_id, "task_id": task["task_id"], "worker_id": "w1", "status": "success"}
        r = await http.post(rxon.ENDPOINT_TASK_RESULT, json=result, headers=worker_headers("w1"))
        assert r.json()["status"] == "accepted"
        assert (await stack.engine.wait_for_job(job_id, timeout_s=5)).status == "finished"


async def test_one_task_wakes_one_poll() -> None:
    async with running_stack() as stack, httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        await register(http, "w1")
        await register(http, "w2")
        first, second = poll(http, "w1", 1.0), poll(http, "w2", 1.0)
        await until(lambda: len(waiting_polls(stack)) == 2)
        await submit(http)
        answers = sorted([(await first).status_code, (await second).status_code])
        assert answers == [200, 204]


async def test_a_poll_whose_worker_hung_up_gets_nothing_and_the_task_goes_to_the_next() -> None:
    async with running_stack() as stack, httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        await register(http, "w1")
        gone = poll(http, "w1", 30.0)
        await until(lambda: len(waiting_polls(stack)) == 1)
        gone.cancel()  # the worker hangs up: httpx closes the connection
        await until(lambda: waiting_polls(stack) == [])
        job_id = await submit(http)
        r = await poll(http, "w1", 5.0)
        assert r.status_code == 200 and r.json()["job_id"] == job_id


async def test_a_retry_that_becomes_due_later_reaches_a_waiting_poll() -> None:
    engine = make_engine(RETRY_BACKOFF_BASE_S=0.05, RETRY_BACKOFF_MAX_S=0.05)
    async with running_stack(engine) as stack, httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        await register(http, "w1")
        job_id = await submit(http)
        r = await poll(http, "w1", 5.0)
        task = r.json()
        # the first attempt fails with a transient error: the task is queued again after a delay, with no
        # write at the moment it becomes due
        failure = {
            "job_id": job_id,
            "task_id": task["task_id"],
            "worker_id": "w1",
            "status": "failure",
            "error": {"code": "TRANSIENT_ERROR", "message": "blip"},
        }
        r = await http.post(rxon.ENDPOINT_TASK_RESULT, json=failure, headers=worker_headers("w1"))
        assert r.json()["status"] == "accepted"
        r = await poll(http, "w1", 5.0)
        assert r.status_code == 200 and r.json()["task_id"] == task["task_id"]
        assert r.json()["metadata"]["attempt"] == 2
