"""Webhook delivery: a bounded background queue, retries with exponential backoff on the injected clock.

:meth:`WebhookSender.send` never blocks the caller: it puts the delivery on a bounded queue (and reports
``False`` when the queue is full, counting the drop). A few consumer tasks POST each payload; a connection
error, a timeout, a 5xx, 408 or 429 is retried after ``backoff_s * 2**n`` (capped at ``backoff_max_s``)
until ``max_attempts``; any other 4xx is final. A retry waits in a timer task, not in a consumer, so one
dead receiver does not hold up the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from podium.clock import Clock, system_clock
from podium.wire.http import HttpClient, HttpError
from podium.wire.jobs import WebhookPayload

__all__ = ["Delivery", "WebhookSender", "WebhookStats"]

log = logging.getLogger("podium.server.webhooks")

_RETRY_STATUSES = {408, 425, 429}


@dataclass(slots=True)
class Delivery:
    url: str
    body: dict[str, Any]
    attempts: int = 0


_KEEP_OUTCOMES = 1000


@dataclass(slots=True)
class WebhookStats:
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    retried: int = 0
    outcomes: list[tuple[str, str, int]] = field(default_factory=list)
    """``(job_id, outcome, attempts)`` of the last deliveries (at least the last 1,000, at most 2,000), for
    tests and diagnostics."""


class WebhookSender:
    """Delivers webhook payloads in the background. Use ``async with`` or :meth:`start` / :meth:`stop`."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        queue_size: int = 1000,
        concurrency: int = 4,
        max_attempts: int = 5,
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        timeout_s: float = 10.0,
        client: HttpClient | None = None,
        on_outcome: Callable[[str, str], None] | None = None,
    ) -> None:
        self.clock = clock or system_clock
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.stats = WebhookStats()
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue(maxsize=queue_size)
        self._client = client
        self._own_client = client is None
        self._consumers: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._on_outcome = on_outcome

    async def __aenter__(self) -> WebhookSender:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the consumers (idempotent)."""
        if self._consumers:
            return
        if self._client is None:
            self._client = HttpClient(timeout_s=self.timeout_s, max_connections=self.concurrency)
        self._consumers = [
            asyncio.create_task(self._consume(), name=f"webhooks-{i}") for i in range(self.concurrency)
        ]

    async def stop(self, *, drain_timeout_s: float = 5.0) -> None:
        """Deliver what is queued (for up to ``drain_timeout_s``), then stop. Idempotent."""
        if not self._consumers:
            return
        try:
            await self.clock.wait_for(self.join(), drain_timeout_s)
        except TimeoutError:
            log.warning("webhooks: %d deliveries still pending at shutdown", self.pending)
        for task in [*self._consumers, *self._timers]:
            task.cancel()
        await asyncio.gather(*self._consumers, *self._timers, return_exceptions=True)
        self._consumers, self._timers = [], set()
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def pending(self) -> int:
        """Deliveries queued, in flight or waiting for a retry."""
        return self._queue.qsize() + self._in_flight + len(self._timers)

    async def join(self) -> None:
        """Wait until nothing is queued, in flight or waiting for a retry."""
        while self.pending:
            self._idle.clear()
            await self._idle.wait()

    async def put(self, url: str, payload: WebhookPayload | dict[str, Any]) -> None:
        """Queue one delivery, waiting while the queue is full (nothing is dropped)."""
        body = payload.model_dump(mode="json") if isinstance(payload, WebhookPayload) else dict(payload)
        self._idle.clear()
        await self._queue.put(Delivery(url, body))

    def offer(self, url: str, body: dict[str, Any]) -> bool:
        """Queue one delivery if there is room now (``body`` is taken as is, not copied); ``False`` when the
        queue is full, and nothing is queued or dropped: the caller then waits in :meth:`put`."""
        try:
            self._queue.put_nowait(Delivery(url, body))
        except asyncio.QueueFull:
            return False
        self._idle.clear()
        return True

    def send(self, url: str, payload: WebhookPayload | dict[str, Any]) -> bool:
        """Queue one delivery; ``False`` (and a warning) if the queue is full."""
        body = payload.model_dump(mode="json") if isinstance(payload, WebhookPayload) else dict(payload)
        try:
            self._queue.put_nowait(Delivery(url, body))
        except asyncio.QueueFull:
            self.stats.dropped += 1
            self._record(body, "dropped", 0)
            log.warning("webhooks: queue full, dropped %s for job %s", body.get("event"), body.get("job_id"))
            return False
        self._idle.clear()
        return True

    def _record(self, body: dict[str, Any], outcome: str, attempts: int) -> None:
        outcomes = self.stats.outcomes
        outcomes.append((str(body.get("job_id")), outcome, attempts))
        if len(outcomes) > 2 * _KEEP_OUTCOMES:  # trimmed now and then, not on every delivery
            del outcomes[:-_KEEP_OUTCOMES]
        if self._on_outcome is not None:
            self._on_outcome(str(body.get("event")), outcome)

    def _settle(self) -> None:
        if not self.pending:
            self._idle.set()

    async def _consume(self) -> None:
        while True:
            delivery = await self._queue.get()
            self._in_flight += 1
            try:
                await self._attempt(delivery)
            except Exception:  # pragma: no cover - a bug must not kill the consumer
                log.exception("webhooks: unexpected error delivering to %s", delivery.url)
            finally:
                self._in_flight -= 1
                self._queue.task_done()
                self._settle()

    async def _attempt(self, delivery: Delivery) -> None:
        assert self._client is not None
        delivery.attempts += 1
        job_id = delivery.body.get("job_id")
        retry = False
        reason = ""
        try:
            response = await self._client.post(delivery.url, json=delivery.body, timeout_s=self.timeout_s)
            if response.status_code < 300:
                self.stats.delivered += 1
                self._record(delivery.body, "delivered", delivery.attempts)
                return
            retry = response.status_code >= 500 or response.status_code in _RETRY_STATUSES
            reason = f"HTTP {response.status_code}"
        except HttpError as exc:
            retry, reason = True, f"{type(exc).__name__}: {exc}"
        if retry and delivery.attempts < self.max_attempts:
            delay = min(self.backoff_s * 2 ** (delivery.attempts - 1), self.backoff_max_s)
            self.stats.retried += 1
            log.info(
                "webhooks: %s for job %s failed (%s), retry %d in %.2f s",
                delivery.url,
                job_id,
                reason,
                delivery.attempts,
                delay,
                extra={"job_id": job_id},
            )
            timer = asyncio.create_task(self._retry_later(delivery, delay))
            self._timers.add(timer)
            timer.add_done_callback(self._timer_done)
            return
        self.stats.failed += 1
        self._record(delivery.body, "failed", delivery.attempts)
        log.warning(
            "webhooks: giving up on %s for job %s after %d attempts (%s)",
            delivery.url,
            job_id,
            delivery.attempts,
            reason,
            extra={"job_id": job_id},
        )

    def _timer_done(self, task: asyncio.Task[None]) -> None:
        self._timers.discard(task)
        self._settle()

    async def _retry_later(self, delivery: Delivery, delay_s: float) -> None:
        await self.clock.sleep(delay_s)
        # A retry re-enters the bounded queue; waiting for room here applies backpressure to retries only.
        await self._queue.put(delivery)
