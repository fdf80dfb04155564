"""The hot routes the app serves without FastAPI (submission, tasks/next, tasks/result) and podium's batch
extension of the worker protocol (``tasks/next?max_tasks=``, ``POST /_worker/tasks/results``)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from podium.engine.blueprint import Blueprint
from podium.engine.keys import TASK
from podium.engine.models import Task
from podium.engine.storage import MemoryStorage
from podium.errors import StoreError
from podium.server.routes_worker import RESULT_LANES
from podium.server.routes_worker import task_wire as _task_wire
from podium.server.webhooks import WebhookSender
from podium.store import Put, open_store
from podium.testing import EngineHarness
from podium.wire import rxon
from tests.conformance.redis_support import redis_prefix
from tests.server.harness import CLIENT_TOKEN, WORKER_TOKEN, Stack, running_stack, transcode_blueprint

WORKER = {"X-Worker-Token": WORKER_TOKEN, "X-Worker-ID": "bw"}
CLIENT = {"X-Client-Token": CLIENT_TOKEN}


def test_task_wire_is_the_task_payload_wire_form() -> None:
    for deadline in (None, 1234.5):
        task = Task("t1", "j1", "noop", {"a": [1, 2]}, 7, 2, 3, "w", deadline)
        expected = rxon.TaskPayload(
            job_id="j1",
            task_id="t1",
            type="noop",
            params={"a": [1, 2]},
            priority=3.0,
            deadline=int(deadline) if deadline else None,
            metadata={"attempt": 2},
            timestamp=99,
        ).wire()
        assert _task_wire(task, 99.9) == expected


async def register(http: httpx.AsyncClient) -> None:
    body = {"worker_id": "bw", "supported_skills": [{"name": "video_transcoding"}]}
    assert (await http.post(rxon.ENDPOINT_REGISTER, json=body, headers=WORKER)).status_code == 200


async def test_batch_next_and_results_round_trip() -> None:
    async with running_stack() as stack, httpx.AsyncClient(base_url=stack.url) as http:
        await register(http)
        ids = []
        for i in range(3):
            r = await http.post(
                "/api/v1/jobs/transcode", json={"initial_data": {"path": f"/p{i}"}}, headers=CLIENT
            )
            assert r.status_code == 202, r.text
            ids.append(r.json()["job_id"])
        next_url = rxon.ENDPOINT_TASK_NEXT.format(worker_id="bw")
        tasks: list[dict[str, Any]] = []
        while len(tasks) < 3:  # the engine dispatches asynchronously
            r = await http.get(next_url, params={"max_tasks": "5", "timeout": "2"}, headers=WORKER)
            assert r.status_code == 200, r.text
            assert r.headers[rxon.PROTOCOL_VERSION_HEADER] == rxon.PROTOCOL_VERSION
            tasks += r.json()["tasks"]
        assert sorted(t["job_id"] for t in tasks) == sorted(ids)
        results = [
            {"job_id": t["job_id"], "task_id": t["task_id"], "status": "success", "data": {"n": 1}}
            for t in tasks
        ]
        body = {"worker_id": "bw", "results": results, "next": {"max_tasks": 4}}
        body["security"] = {"signature": rxon.sign_payload(body, WORKER_TOKEN)}
        r = await http.post(rxon.ENDPOINT_TASK_RESULTS, json=body, headers=WORKER)
        assert r.status_code == 200, r.text
        assert [x["status"] for x in r.json()["results"]] == ["accepted"] * 3
        assert r.json()["tasks"] == []
        # at-least-once: the same batch again changes nothing
        r = await http.post(rxon.ENDPOINT_TASK_RESULTS, json=body, headers=WORKER)
        assert [x["status"] for x in r.json()["results"]] == ["ignored"] * 3
        for job_id in ids:
            view = await stack.engine.wait_for_job(job_id, timeout_s=5)
            assert view.status == "finished"


async def test_batch_results_check_signature_and_worker_ids() -> None:
    async with running_stack() as stack, httpx.AsyncClient(base_url=stack.url) as http:
        await register(http)
        bad_sig = {"worker_id": "bw", "results": [], "security": {"signature": "00" * 32}}
        assert (await http.post(rxon.ENDPOINT_TASK_RESULTS, json=bad_sig, headers=WORKER)).status_code == 403
        other = {"worker_id": "bw", "results": [{"job_id": "j", "task_id": "t", "worker_id": "x"}]}
        r = await http.post(rxon.ENDPOINT_TASK_RESULTS, json=other, headers=WORKER)
        assert r.status_code == 403 and r.json()["field"] == "results.0.worker_id"
        r = await http.post(rxon.ENDPOINT_TASK_RESULTS, json={"results": []}, headers={"X-Worker-ID": "bw"})
        assert r.status_code == 401
        r = await http.get(
            rxon.ENDPOINT_TASK_NEXT.format(worker_id="bw"), params={"max_tasks": "0"}, headers=WORKER
        )
        assert r.status_code == 422 and r.json()["field"] == "max_tasks"
        r = await http.get(rxon.ENDPOINT_TASK_NEXT.format(worker_id="other"), headers=WORKER)
        assert r.status_code == 403


async def test_submission_errors_on_the_fast_route() -> None:
    async with running_stack() as stack, httpx.AsyncClient(base_url=stack.url) as http:
        r = await http.post("/api/v1/jobs/transcode", content=b"{not json", headers=CLIENT)
        assert r.status_code == 422
        r = await http.post("/api/v1/jobs/transcode", json={"initial_data": [1]}, headers=CLIENT)
        assert r.status_code == 422 and r.json()["field"] == "initial_data"
        r = await http.post(
            "/api/v1/jobs/transcode", json={"initial_data": {}, "priority": "high"}, headers=CLIENT
        )
        assert r.status_code == 422 and r.json()["field"] == "priority"
        body = {"initial_data": {"path": "p", "size": 1}, "extra": 1}
        r = await http.post("/api/v1/jobs/transcode", json=body, headers=CLIENT)
        assert r.status_code == 202  # an unknown top-level field is ignored, as Avtomatika does
        r = await http.post("/api/v1/jobs/transcode", content=b"{not json")
        assert r.status_code == 401  # authentication before the body is read
        metrics = (await http.get("/_public/metrics")).text
        assert 'route="/api/v1/jobs/transcode",status="422"' in metrics


async def test_put_waits_for_room_instead_of_dropping() -> None:
    sender = WebhookSender(queue_size=1)  # not started: nothing consumes
    await sender.put("http://127.0.0.1:9/hook", {"event": "job_finished", "job_id": "a"})
    waiting = asyncio.ensure_future(
        sender.put("http://127.0.0.1:9/hook", {"event": "job_finished", "job_id": "b"})
    )
    await asyncio.sleep(0.05)
    assert not waiting.done() and sender.stats.dropped == 0
    sender._queue.get_nowait()  # a consumer takes one: room for the waiting delivery
    await asyncio.wait_for(waiting, 5)
    assert sender.pending == 1


async def test_job_status_on_the_fast_route_is_the_fastapi_routes_answer() -> None:
    async with running_stack() as stack, httpx.AsyncClient(base_url=stack.url) as http:
        r = await http.post("/api/v1/jobs/transcode", json={"initial_data": {"path": "/a"}}, headers=CLIENT)
        job_id = r.json()["job_id"]
        fast = await http.get(f"/api/v1/jobs/{job_id}", headers=CLIENT)
        # the FastAPI twin of the route, behind the front
        twin_transport = httpx.ASGITransport(app=stack.server.app._fastapi)
        async with httpx.AsyncClient(transport=twin_transport, base_url="http://twin") as twin:
            slow = await twin.get(f"/api/v1/jobs/{job_id}", headers=CLIENT)
            assert fast.status_code == slow.status_code == 200
            assert fast.json() == slow.json()
            assert (
                fast.json()["status"] == "waiting_for_worker" and fast.json()["blueprint_name"] == "transcode"
            )
            for path, headers in (
                (f"/api/v1/jobs/{job_id}", {}),  # no token
                (f"/api/v1/jobs/{job_id}", {"X-Client-Token": "wrong"}),
                ("/api/v1/jobs/no-such-job", CLIENT),
            ):
                a, b = await http.get(path, headers=headers), await twin.get(path, headers=headers)
                assert a.status_code == b.status_code and a.status_code in (401, 404)
                assert a.json() == b.json() and a.json()["error"]
        # sub-routes of a job still reach FastAPI
        r = await http.get(f"/api/v1/jobs/{job_id}/history", headers=CLIENT)
        assert r.status_code == 200 and r.json()[0]["event"]
        metrics = (await http.get("/_public/metrics")).text
        assert 'method="GET",route="/api/v1/jobs/{job_id}",status="200"' in metrics


class HeldCompletions(MemoryStorage):
    """A memory store that holds each write completing a task until ``n`` of them are in flight and (with
    ``take``) a take was made since the first, for at most 5 s: a results batch that applies one result after
    the other, or takes only after its results, shows up as ``most < n`` or ``took_during == False``."""

    def __init__(self, n: int, *, take: bool = True) -> None:
        super().__init__()
        self.n, self.in_flight, self.most = n, 0, 0
        self.per_job: collections.Counter[str] = collections.Counter()
        self.most_per_job = 0
        self.ready = asyncio.Event()
        self.took_during = not take
        self.fail: set[str] = set()  # tasks whose completion fails (the store is away)

    def _check(self) -> None:
        if self.in_flight >= self.n and self.took_during:
            self.ready.set()

    async def apply(self, *ops: Any, durable: bool = True) -> list[Any]:
        done = [op for op in ops if type(op) is Put and op.kind == TASK and op.status == "completed"]
        if not done:
            return await super().apply(*ops, durable=durable)
        if any(op.id in self.fail for op in done):
            raise StoreError("the store is away")
        job = done[0].group
        self.in_flight += 1
        self.per_job[job] += 1
        self.most = max(self.most, self.in_flight)
        self.most_per_job = max(self.most_per_job, self.per_job[job])
        self._check()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ready.wait(), 5)
            return await super().apply(*ops, durable=durable)
        finally:
            self.in_flight -= 1
            self.per_job[job] -= 1

    async def take_now(self, queues: Any, *, owner: str, lease_s: float, limit: int) -> list[Any]:
        leases = await super().take_now(queues, owner=owner, lease_s=lease_s, limit=limit)
        if self.in_flight:
            self.took_during = True
            self._check()
        return leases


async def submit_and_take(
    http: httpx.AsyncClient, n: int, *, jobs: int | None = None, route: str = "/api/v1/jobs/transcode"
) -> list[dict[str, Any]]:
    """Submit ``jobs`` jobs (default ``n``) on ``route`` and lease ``n`` tasks to worker ``bw``."""
    for i in range(n if jobs is None else jobs):
        r = await http.post(route, json={"initial_data": {"path": f"/p{i}"}}, headers=CLIENT)
        assert r.status_code == 202, r.text
    tasks: list[dict[str, Any]] = []
    while len(tasks) < n:  # the engine dispatches asynchronously
        r = await http.get(
            rxon.ENDPOINT_TASK_NEXT.format(worker_id="bw"),
            params={"max_tasks": str(n - len(tasks)), "timeout": "2"},
            headers=WORKER,
        )
        assert r.status_code == 200, r.text
        tasks += r.json()["tasks"]
    return tasks


def results_batch(tasks: list[dict[str, Any]], max_tasks: int) -> dict[str, Any]:
    results = [
        {"job_id": t["job_id"], "task_id": t["task_id"], "status": "success", "data": {}} for t in tasks
    ]
    body: dict[str, Any] = {"worker_id": "bw", "results": results}
    if max_tasks:
        body["next"] = {"max_tasks": max_tasks}
    body["security"] = {"signature": rxon.sign_payload(body, WORKER_TOKEN)}
    return body


@contextlib.asynccontextmanager
async def held(
    n: int, *, hold: int | None = None, take: bool = True
) -> AsyncIterator[tuple[HeldCompletions, Stack, httpx.AsyncClient, list[dict[str, Any]], str]]:
    """A server on a :class:`HeldCompletions` store (holding till ``hold``, default ``n``, are in flight):
    ``n`` tasks leased to worker ``bw``, one more job queued."""
    store = HeldCompletions(n if hold is None else hold, take=take)
    engine = EngineHarness(store, blueprints=[transcode_blueprint()]).engine
    async with running_stack(engine) as stack, httpx.AsyncClient(base_url=stack.url) as http:
        await register(http)
        tasks = await submit_and_take(http, n)
        r = await http.post("/api/v1/jobs/transcode", json={"initial_data": {"path": "/q"}}, headers=CLIENT)
        yield store, stack, http, tasks, r.json()["job_id"]


async def test_batch_results_are_applied_side_by_side_with_the_next_take() -> None:
    # Given three tasks held by the worker, and a fourth job queued
    async with held(3) as (store, stack, http, tasks, fourth):
        # When the three results come in one batch that asks for the next task
        r = await http.post(rxon.ENDPOINT_TASK_RESULTS, json=results_batch(tasks, 1), headers=WORKER)
        # Then the three writes were in flight together, with the take, and all of it is answered
        assert r.status_code == 200, r.text
        assert store.most == 3 and store.took_during
        assert [x["status"] for x in r.json()["results"]] == ["accepted"] * 3
        assert [t["job_id"] for t in r.json()["tasks"]] == [fourth]
        for t in tasks:
            assert (await stack.engine.wait_for_job(t["job_id"], timeout_s=5)).status == "finished"


async def test_a_failed_results_batch_hands_back_the_tasks_it_took() -> None:
    # Given a task held by the worker whose completion will fail, and a second job queued
    async with held(1) as (store, _, http, tasks, second):
        store.fail.add(tasks[0]["task_id"])
        # When the batch carrying its result (and asking for a task) fails
        r = await http.post(rxon.ENDPOINT_TASK_RESULTS, json=results_batch(tasks, 1), headers=WORKER)
        assert r.status_code >= 500
        # Then the task its take leased is queued again at once (its lease lasts TASK_LEASE_S)
        r = await http.get(
            rxon.ENDPOINT_TASK_NEXT.format(worker_id="bw"), params={"max_tasks": "2"}, headers=WORKER
        )
        assert r.status_code == 200, r.text
        assert [t["job_id"] for t in r.json()["tasks"]] == [second]


def fanout_blueprint() -> Blueprint:
    bp = Blueprint("fanout", api_endpoint="/jobs/fanout", api_version="v1")

    @bp.handler(is_start=True)
    async def start(actions: Any) -> None:
        actions.dispatch_parallel([{"type": "video_transcoding", "params": {"path": "/f"}}] * 2, "joined")

    @bp.handler(is_end=True)
    async def joined() -> None:
        return None

    return bp


async def test_batch_results_of_one_job_are_applied_in_turn() -> None:
    # Given two jobs of two parallel tasks each, the four tasks held by the worker
    store = HeldCompletions(2, take=False)
    engine = EngineHarness(store, blueprints=[fanout_blueprint()]).engine
    async with running_stack(engine) as stack, httpx.AsyncClient(base_url=stack.url) as http:
        await register(http)
        tasks = await submit_and_take(http, 4, jobs=2, route="/api/v1/jobs/fanout")
        # When their four results come in one batch
        r = await http.post(rxon.ENDPOINT_TASK_RESULTS, json=results_batch(tasks, 0), headers=WORKER)
        # Then the two jobs' writes were side by side, each job's one after the other, and both jobs joined
        assert r.status_code == 200, r.text
        assert [x["status"] for x in r.json()["results"]] == ["accepted"] * 4
        assert store.most == 2 and store.most_per_job == 1
        for job_id in {t["job_id"] for t in tasks}:
            assert (await stack.engine.wait_for_job(job_id, timeout_s=5)).status == "finished"


async def test_a_batch_of_failures_scores_its_worker_once_each(redis_url: str) -> None:
    # Given ten tasks held by the worker, on Redis (where a worker's score is a read and a versioned write)
    async with redis_prefix(redis_url) as url:
        engine = EngineHarness(open_store(url), blueprints=[transcode_blueprint()]).engine
        async with running_stack(engine) as stack, httpx.AsyncClient(base_url=stack.url) as http:
            await register(http)
            tasks = await submit_and_take(http, 10)
            # When their ten results, permanent failures, come in one batch
            body = results_batch(tasks, 0)
            for result in body["results"]:
                result.update(status="failure", error={"code": rxon.ERROR_CODE_PERMANENT, "message": "no"})
            body.pop("security")
            body["security"] = {"signature": rxon.sign_payload(body, WORKER_TOKEN)}
            r = await http.post(rxon.ENDPOINT_TASK_RESULTS, json=body, headers=WORKER)
            # Then each of them cost the worker its penalty (side by side, eight tries each would lose some)
            assert r.status_code == 200, r.text
            assert [x["status"] for x in r.json()["results"]] == ["accepted"] * 10
            state = await stack.engine.worker_state("bw")
            assert state is not None and state.reputation == pytest.approx(1.0 - 10 * 0.05)


async def test_a_batch_applies_at_most_result_lanes_results_at_once() -> None:
    # Given more tasks of different jobs held by the worker than there are lanes
    n = RESULT_LANES + 4
    async with held(n, hold=RESULT_LANES, take=False) as (store, _, http, tasks, _):
        # When their results come in one batch
        r = await http.post(rxon.ENDPOINT_TASK_RESULTS, json=results_batch(tasks, 0), headers=WORKER)
        # Then at most RESULT_LANES of their writes were in flight at once, and every one was applied
        assert r.status_code == 200, r.text
        assert [x["status"] for x in r.json()["results"]] == ["accepted"] * n
        assert store.most == RESULT_LANES


@pytest.mark.parametrize(
    "query",
    [
        "",
        "timeout=30.0&available_skills=noop&hot_skills=",
        "timeout=5&timeout=7&max_tasks=3",
        "a&b=&=x&c=d=e&&f=1",
        "available_skills=a%2Cb&x=y+z",
        "name=caf\u00e9",
        "k=%zz&k=%41",
    ],
)
def test_tasks_next_reads_its_query_as_parse_qs_does(query: str) -> None:
    from urllib.parse import parse_qs

    from podium.server.app import _parse_query

    assert _parse_query(query.encode("latin-1")) == parse_qs(query)
