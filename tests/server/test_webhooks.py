"""The webhook sender against a real receiving server on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from podium.engine.models import EngineEvent
from podium.server import ServerSettings, create_app
from podium.server.webhooks import WebhookSender
from podium.wire.jobs import WebhookPayload
from tests.server.harness import make_engine
from tests.server.loopback import serve_app


class Receiver:
    """A webhook receiver that answers 500 to the first ``fail_first`` requests for each job."""

    def __init__(self, *, fail_first: int = 0, status: int = 500) -> None:
        self.fail_first, self.status = fail_first, status
        self.calls: list[dict[str, Any]] = []
        self.accepted: list[dict[str, Any]] = []
        self.done = asyncio.Event()
        self.expected = 1
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.calls.append(body)
        seen = sum(1 for c in self.calls if c["job_id"] == body["job_id"])
        if seen <= self.fail_first:
            return JSONResponse({"error": "not now"}, status_code=self.status)
        self.accepted.append(body)
        if len(self.accepted) >= self.expected:
            self.done.set()
        return JSONResponse({"ok": True})


def payload(job_id: str, event: str = "job_finished") -> WebhookPayload:
    return WebhookPayload(event=event, job_id=job_id, status="finished", result={"x": 1}, error=None)


async def test_delivers_payload_with_event_job_status_result_error() -> None:
    receiver = Receiver()
    async with serve_app(receiver.app) as base, WebhookSender(backoff_s=0.01) as sender:
        assert sender.send(f"{base}/hook", payload("job-1"))
        await asyncio.wait_for(receiver.done.wait(), 10)
        await asyncio.wait_for(sender.join(), 10)
    assert receiver.accepted == [
        {
            "event": "job_finished",
            "job_id": "job-1",
            "status": "finished",
            "result": {"x": 1},
            "error": None,
            "timestamp": None,
        }
    ]
    assert sender.stats.delivered == 1 and sender.stats.retried == 0


async def test_receiver_failing_twice_gets_it_on_the_third_attempt() -> None:
    receiver = Receiver(fail_first=2)
    async with serve_app(receiver.app) as base, WebhookSender(backoff_s=0.01, max_attempts=5) as sender:
        sender.send(f"{base}/hook", payload("job-2", "job_failed"))
        await asyncio.wait_for(receiver.done.wait(), 10)
        await asyncio.wait_for(sender.join(), 10)
    assert [c["job_id"] for c in receiver.calls] == ["job-2"] * 3
    assert receiver.accepted[0]["event"] == "job_failed"
    assert sender.stats.retried == 2
    assert sender.stats.outcomes == [("job-2", "delivered", 3)]


async def test_gives_up_after_max_attempts() -> None:
    receiver = Receiver(fail_first=10)
    async with serve_app(receiver.app) as base, WebhookSender(backoff_s=0.001, max_attempts=3) as sender:
        sender.send(f"{base}/hook", payload("job-3"))
        await asyncio.wait_for(sender.join(), 10)
    assert len(receiver.calls) == 3
    assert sender.stats.failed == 1 and sender.stats.delivered == 0


async def test_client_error_is_not_retried() -> None:
    receiver = Receiver(fail_first=10, status=404)
    async with serve_app(receiver.app) as base, WebhookSender(backoff_s=0.001, max_attempts=5) as sender:
        sender.send(f"{base}/hook", payload("job-4"))
        await asyncio.wait_for(sender.join(), 10)
    assert len(receiver.calls) == 1
    assert sender.stats.outcomes == [("job-4", "failed", 1)]


async def test_unreachable_receiver_is_retried_then_given_up() -> None:
    # A port nobody listens on: connection refused, a transient error.
    async with serve_app(Receiver().app) as base:
        dead = base
    async with WebhookSender(backoff_s=0.001, max_attempts=2) as sender:
        sender.send(f"{dead}/hook", payload("job-5"))
        await asyncio.wait_for(sender.join(), 10)
    assert sender.stats.retried == 1 and sender.stats.failed == 1


async def test_bounded_queue_drops_and_reports() -> None:
    sender = WebhookSender(queue_size=2)  # not started: nothing consumes
    assert sender.send("http://127.0.0.1:9/hook", payload("a"))
    assert sender.send("http://127.0.0.1:9/hook", payload("b"))
    assert not sender.send("http://127.0.0.1:9/hook", payload("c"))
    assert sender.stats.dropped == 1


async def test_one_dead_receiver_does_not_hold_up_others() -> None:
    slow = Receiver(fail_first=3)
    good = Receiver()
    good.expected = 5
    async with (
        serve_app(slow.app) as slow_base,
        serve_app(good.app) as good_base,
        WebhookSender(backoff_s=0.05, max_attempts=4, concurrency=1) as sender,
    ):
        sender.send(f"{slow_base}/hook", payload("slow"))
        for i in range(5):
            sender.send(f"{good_base}/hook", payload(f"good-{i}"))
        await asyncio.wait_for(good.done.wait(), 10)
        # The good receiver got everything while the slow one is still waiting for its retries.
        assert not slow.accepted
        await asyncio.wait_for(sender.join(), 10)
    assert slow.accepted and len(good.accepted) == 5


async def test_job_webhooks_wait_for_room_in_event_order_behind_one_task() -> None:
    app = create_app(make_engine(), ServerSettings(webhook_queue_size=1), manage_engine=False)
    st = app.state.podium  # the sender is not started: nothing consumes its queue
    for job_id in ("a", "b", "c"):
        st._on_event(EngineEvent("job_finished", job_id, 1.0, "finished", data={"webhook_url": "http://h/x"}))
    assert st.webhooks._queue.qsize() == 1 and [b["job_id"] for _, b in st._overflow] == ["b", "c"]
    drainer = st._drainer
    assert drainer is not None
    for expected in ("a", "b", "c"):
        delivery = await asyncio.wait_for(st.webhooks._queue.get(), 5)  # a consumer makes room
        assert delivery.body["job_id"] == expected
    await asyncio.wait_for(drainer, 5)
    assert st._drainer is None and not st._overflow
