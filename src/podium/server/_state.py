"""What the app holds between requests: settings, credentials, quotas, webhooks, remote workers, metrics."""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from podium.clock import Clock
from podium.engine.engine import OrchestratorEngine
from podium.engine.models import EngineEvent, Task
from podium.ops import EngineMetrics, Scheduler, Tracing
from podium.server.quotas import QuotaTracker
from podium.server.ratelimit import limiter_from_settings
from podium.server.security import ClientRegistry, WorkerTokens
from podium.server.settings import ServerSettings
from podium.server.webhooks import WebhookSender
from podium.wire import rxon

__all__ = ["Metrics", "RemoteWorker", "RequestMetrics", "ServerState"]

log = logging.getLogger("podium.server")

WEBHOOK_EVENTS = {"job_finished", "job_failed", "job_quarantined"}
_FORGET_DELIVERY = ("task_cancelled", "task_timeout")  # tasks withdrawn by the engine, not by a result
_SUBSCRIBED = frozenset({*WEBHOOK_EVENTS, *_FORGET_DELIVERY})


class _EngineEvents(Collector):
    """``podium_engine_events_total{type}``, read from the engine's own counts when scraped (the server
    does not subscribe to every event just to count it)."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("podium_engine_events", "Engine events", labels=["type"])
        for type_, count in sorted(self.counts.items()):
            family.add_metric([type_], count)
        yield family


class _Workers(Collector):
    """``orchestrator_active_workers`` and ``podium_workers{status}``: the remote workers this server knows, by
    status (``offline`` when not heard from within ``worker_timeout_s``), read when scraped."""

    def __init__(self, st: ServerState) -> None:
        self.st = st

    def collect(self) -> Iterator[GaugeMetricFamily]:
        st = self.st
        now, timeout = st.clock.now(), st.settings.worker_timeout_s
        counts: dict[str, int] = {}
        for w in list(st.workers.values()):
            status = "offline" if now - w.last_seen > timeout else w.status
            counts[status] = counts.get(status, 0) + 1
        active = GaugeMetricFamily(
            "orchestrator_active_workers", "Workers heard from within worker_timeout_s"
        )
        active.add_metric([], sum(n for status, n in counts.items() if status != "offline"))
        yield active
        family = GaugeMetricFamily("podium_workers", "Remote workers by status", labels=["status"])
        for status, n in sorted(counts.items()):
            family.add_metric([status], n)
        yield family


_BOUNDS = Histogram.DEFAULT_BUCKETS  # prometheus_client's default latency buckets, +Inf last
_BOUND_NAMES = [*(repr(float(b)) for b in _BOUNDS[:-1]), "+Inf"]  # as prometheus_client writes them


def _created_series() -> bool:
    """Whether prometheus_client writes ``_created`` samples now (``disable_created_metrics()`` and the
    ``PROMETHEUS_DISABLE_CREATED_SERIES`` variable turn them off): asked of a counter of its own."""
    probe = Counter("podium_probe", "", registry=None)
    return any(sample.name.endswith("_created") for metric in probe.collect() for sample in metric.samples)


class RequestMetrics(Collector):
    """``podium_http_requests_total{method,route,status}`` and ``podium_http_request_seconds{route}``, kept as
    plain numbers and turned into families when scraped: the samples prometheus_client's ``Counter`` and
    ``Histogram`` (default buckets) would give, ``_created`` included, in the same order, without the two
    locks they take per request. Updated on the event loop's thread (:meth:`observe`)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], list[float]] = {}  # -> [requests, created]
        self.latency: dict[str, list[float]] = {}  # route -> [per bucket..., sum, created]

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request and its latency."""
        key = (method, route, status)
        count = self.counts.get(key)
        if count is None:
            count = self.counts[key] = [0.0, time.time()]
        count[0] += 1
        hist = self.latency.get(route)
        if hist is None:
            hist = self.latency[route] = [0.0] * len(_BOUNDS) + [0.0, time.time()]
        hist[bisect.bisect_left(_BOUNDS, seconds)] += 1
        hist[-2] += seconds

    def requests(self, method: str, route: str, status: int) -> float:
        """Requests counted so far with these labels."""
        count = self.counts.get((method, route, status))
        return count[0] if count is not None else 0.0

    def collect(self) -> Iterator[Metric]:
        created = _created_series()
        requests = CounterMetricFamily(
            "podium_http_requests", "HTTP requests", labels=["method", "route", "status"]
        )
        for (method, route, status), (n, since) in list(self.counts.items()):
            requests.add_metric([method, route, str(status)], n, created=since if created else None)
        yield requests
        name = "podium_http_request_seconds"
        latency = HistogramMetricFamily(name, "HTTP request latency", labels=["route"])
        for route, hist in list(self.latency.items()):
            cumulative, buckets = 0.0, []
            for bound, n in zip(_BOUND_NAMES, hist, strict=False):
                cumulative += n
                buckets.append((bound, cumulative))
            latency.add_metric([route], buckets, hist[-2])
            if created:
                latency.samples.append(Sample(f"{name}_created", {"route": route}, hist[-1]))
        yield latency


class Metrics:
    """Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

    def __init__(self, engine_event_counts: dict[str, int] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.http = RequestMetrics()
        self.registry.register(self.http)
        self.registry.register(_EngineEvents(engine_event_counts if engine_event_counts is not None else {}))
        self.webhooks = Counter(
            "podium_webhooks_total",
            "Webhook deliveries by outcome",
            ["event", "outcome"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "podium_auth_failures_total", "Refused credentials", ["kind"], registry=self.registry
        )
        self.ratelimit_blocked = Counter(
            "orchestrator_ratelimit_blocked_total",
            "Requests refused by the rate limiter (Avtomatika's name)",
            ["kind", "op_class"],
            registry=self.registry,
        )
        self.quota_blocked = Counter(
            "podium_quota_blocked_total", "Requests refused by a quota", ["quota"], registry=self.registry
        )
        self.workers = Gauge("podium_workers_registered", "Remote workers registered", registry=self.registry)


@dataclass(slots=True)
class RemoteWorker:
    """A remote worker as this server knows it (the engine's registry holds the durable record)."""

    worker_id: str
    worker_type: str
    skills: dict[str, rxon.SkillInfo]
    capacity: int | None
    registered_at: float
    last_seen: float
    status: str = "idle"
    current_tasks: list[str] = field(default_factory=list)
    hot_skills: list[str] = field(default_factory=list)
    cost_per_skill: dict[str, float] | None = None
    commands: list[rxon.WorkerCommand] = field(default_factory=list)


class ServerState:
    """Everything the routes share. Built by :func:`podium.server.create_app`."""

    def __init__(
        self,
        engine: OrchestratorEngine,
        settings: ServerSettings,
        *,
        manage_engine: bool,
        tracing: Tracing | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock: Clock = engine.clock
        self.manage_engine = manage_engine
        self.clients = ClientRegistry.from_settings(
            client_token=settings.client_token, clients_config_path=settings.clients_config_path
        )
        self.worker_tokens = WorkerTokens(
            global_token=settings.global_worker_token, path=settings.workers_config_path
        )
        self.quotas = QuotaTracker(engine.storage, clock=self.clock)
        self.rate_limiter = limiter_from_settings(engine.storage, settings, self.clock)
        """Counts requests per client/worker and operation class (``RATE_LIMITING_ENABLED``), else ``None``."""
        path = settings.schedules_config_path
        self.scheduler: Scheduler | None = Scheduler.from_file(engine, path) if path is not None else None
        """The native scheduler (``podium serve --schedules``, else the engine's ``SCHEDULES_CONFIG_PATH``). It is
        the engine's (``engine.scheduler``), started and stopped with it: one scheduler, never two."""
        if self.scheduler is not None:
            engine.scheduler = self.scheduler
        self.metrics = Metrics(engine.event_counts)
        self.metrics.registry.register(_Workers(self))
        self.tracing = tracing
        """Spans of jobs, states and tasks (extra ``otel``); remote workers get each task's traceparent."""
        self.engine_metrics = EngineMetrics(self.metrics.registry)
        """Jobs, tasks, queues, store latency: from the engine's events (subscribed while the app runs)."""
        self._webhook_counters: dict[tuple[str, str], Any] = {}
        self.webhooks = WebhookSender(
            clock=self.clock,
            queue_size=settings.webhook_queue_size,
            concurrency=settings.webhook_concurrency,
            max_attempts=settings.webhook_max_attempts,
            backoff_s=settings.webhook_backoff_s,
            backoff_max_s=settings.webhook_backoff_max_s,
            timeout_s=settings.webhook_timeout_s,
            on_outcome=self._count_webhook,
        )
        self.workers: dict[str, RemoteWorker] = {}
        self.delivered: dict[str, Task] = {}
        """Tasks handed to remote workers and not yet answered: task id -> the engine's Task (its token)."""
        self.job_routes: dict[str, str] = {}
        """Each blueprint's own submission path -> the blueprint's name (set by ``create_app``)."""
        self._unsubscribe: Any = None
        self._overflow: deque[tuple[str, dict[str, Any]]] = deque()
        """Webhooks waiting for room in the sender's bounded queue, in event order (one drainer task)."""
        self._drainer: asyncio.Task[None] | None = None

    def _count_webhook(self, event: str, outcome: str) -> None:
        counter = self._webhook_counters.get((event, outcome))
        if counter is None:  # label children cached: .labels() takes a lock and builds a key each time
            counter = self._webhook_counters[event, outcome] = self.metrics.webhooks.labels(event, outcome)
        counter.inc()

    async def start(self) -> None:
        if self.manage_engine:
            await self.engine.start(serve_http=False)  # this app is the HTTP face (and starts the scheduler)
        elif self.scheduler is not None:
            await self.scheduler.start()  # the engine was started before it was given this scheduler
        if self.scheduler is None and isinstance(self.engine.scheduler, Scheduler):
            self.scheduler = self.engine.scheduler  # the engine's own, from Config.SCHEDULES_CONFIG_PATH
        await self.webhooks.start()
        self._unsubscribe = self.engine.subscribe(self._on_event, types=_SUBSCRIBED)
        self.engine_metrics.attach(self.engine)
        if self.tracing is not None:
            self.tracing.attach(self.engine)
        if self.scheduler is not None:
            self.engine_metrics.attach_scheduler(self.scheduler)

    async def stop(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.stop()
        self.engine_metrics.close()
        if self.tracing is not None:
            self.tracing.close()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._drainer is not None:
            await asyncio.gather(self._drainer, return_exceptions=True)
        await self.webhooks.stop()
        await self.quotas.close()
        if self.manage_engine:
            await self.engine.stop()

    async def _drain_overflow(self) -> None:
        try:
            while self._overflow:
                url, body = self._overflow[0]
                await self.webhooks.put(url, body)
                self._overflow.popleft()
        finally:
            self._drainer = None

    def _on_event(self, event: EngineEvent) -> None:
        if event.type in WEBHOOK_EVENTS:
            # The engine's terminal events carry the job's webhook_url, result and error: no job read, and
            # nothing at all for a job without a webhook.
            data = event.data or {}
            url = data.get("webhook_url")
            if url and event.job_id:
                # The WebhookPayload fields, built directly; waits while the queue is full.
                body = {
                    "event": event.type,
                    "job_id": event.job_id,
                    "status": event.status,
                    "result": data.get("result"),
                    "error": data.get("error"),
                    "timestamp": event.ts,
                }
                if self._overflow or not self.webhooks.offer(url, body):
                    # The queue is full: wait for room behind the others (one task for all of them).
                    self._overflow.append((url, body))
                    if self._drainer is None:
                        self._drainer = asyncio.ensure_future(self._drain_overflow())
        elif event.task_id:
            self.delivered.pop(event.task_id, None)
