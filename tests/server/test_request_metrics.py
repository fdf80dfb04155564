"""The server's request metrics, kept as plain numbers: scraped, the same text prometheus_client's own
``Counter`` and ``Histogram`` give for the same requests (``_created`` included, and without it when
prometheus_client is told to leave it out)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from podium.server._state import RequestMetrics

REQUESTS = [
    ("GET", "/api/v1/jobs/{job_id}", 200, 0.0004),
    ("POST", "/api/v1/jobs/bench", 202, 0.003),
    ("GET", "/api/v1/jobs/{job_id}", 404, 0.005),  # on a bucket's bound: counted in that bucket
    ("GET", "/api/v1/jobs/{job_id}", 200, 0.02),
    ("GET", "/_worker/workers/{worker_id}/tasks/next", 204, 30.0),  # above the last bound: +Inf only
    ("POST", "/_worker/tasks/result", 200, 0.0),
]


def _created_as_zero(text: str) -> str:
    return re.sub(r"^(\w+_created\{.*\}) \S+$", r"\1 0", text, flags=re.MULTILINE)


def _both() -> tuple[str, str]:
    reference = CollectorRegistry()
    counter = Counter(
        "podium_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=reference
    )
    histogram = Histogram(
        "podium_http_request_seconds", "HTTP request latency", ["route"], registry=reference
    )
    registry = CollectorRegistry()
    metrics = RequestMetrics()
    registry.register(metrics)
    for method, route, status, seconds in REQUESTS:
        counter.labels(method, route, str(status)).inc()
        histogram.labels(route).observe(seconds)
        metrics.observe(method, route, status, seconds)
    return generate_latest(reference).decode(), generate_latest(registry).decode()


def test_scraped_as_prometheus_client_counts_and_times_them() -> None:
    reference, ours = _both()
    assert "_created{" in ours and 'le="+Inf",route="/_worker/workers/{worker_id}/tasks/next"} 1.0' in ours
    assert _created_as_zero(ours) == _created_as_zero(reference)
    metrics = RequestMetrics()
    metrics.observe("GET", "/x", 200, 0.1)
    metrics.observe("GET", "/x", 200, 0.1)
    assert metrics.requests("GET", "/x", 200) == 2.0 and metrics.requests("GET", "/x", 404) == 0.0


@pytest.fixture
def no_created_series() -> Iterator[None]:
    prometheus_client.disable_created_metrics()
    try:
        yield
    finally:
        prometheus_client.enable_created_metrics()


@pytest.mark.usefixtures("no_created_series")
def test_without_created_series_when_prometheus_client_leaves_them_out() -> None:
    reference, ours = _both()
    assert "_created" not in ours
    assert ours == reference
