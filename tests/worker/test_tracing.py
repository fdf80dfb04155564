"""The worker SDK and tracing: a skill runs in a span that is a child of the task's W3C traceparent (the
server's task span), and sees the traceparent as ``ctx.traceparent``; a no-op without opentelemetry."""

from __future__ import annotations

from typing import Any

import pytest

from podium.client import AsyncJobClient
from podium.ops import traceparent
from podium.worker import TaskContext, TaskFailed, Worker, _sdk
from tests.server.harness import CLIENT_TOKEN, WORKER_TOKEN, running_stack

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def exporter_and_provider() -> tuple[InMemorySpanExporter, TracerProvider]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, provider


def traced_worker(
    url: str, provider: TracerProvider | None, seen: list[Any], *, fail: bool = False
) -> Worker:
    worker = Worker(
        worker_id="traced",
        server_url=url,
        token=WORKER_TOKEN,
        heartbeat_interval_s=0.2,
        poll_timeout_s=2.0,
        tracer_provider=provider,
    )

    @worker.task("video_transcoding")
    async def transcode(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        # the skill's span is current while it runs: its own spans nest under it
        with trace.get_tracer("skill", tracer_provider=provider).start_as_current_span("inner"):
            pass
        seen.append((ctx.task_id, ctx.traceparent, trace.get_current_span().get_span_context()))
        if fail:
            raise TaskFailed("codec missing", code="INVALID_INPUT_ERROR")
        return {"output_path": params["path"] + ".mp4"}

    return worker


async def run_one(url: str) -> tuple[str, str]:
    async with AsyncJobClient(url, token=CLIENT_TOKEN) as jobs:
        job_id = await jobs.submit("transcode", {"path": "/in.mov"})
        return job_id, (await jobs.wait(job_id, timeout_s=20)).status


async def test_a_skill_runs_in_a_child_span_of_its_task_traceparent() -> None:
    server_spans = InMemorySpanExporter()
    worker_spans, provider = exporter_and_provider()
    seen: list[Any] = []
    async with running_stack(tracing="console") as stack:
        stack.server.app.state.podium.tracing.provider.add_span_processor(SimpleSpanProcessor(server_spans))
        async with traced_worker(stack.url, provider, seen):
            job_id, status = await run_one(stack.url)
    assert status == "finished"
    [(task_id, tp, current)] = seen
    assert tp == traceparent(job_id, task_id)
    spans = {s.name: s for s in worker_spans.get_finished_spans()}
    skill, inner = spans["skill video_transcoding"], spans["inner"]
    task_span = {s.name: s for s in server_spans.get_finished_spans()}["task video_transcoding"]
    # one trace: the server's task span -> the worker's skill span -> the skill's own span
    assert skill.context.trace_id == task_span.context.trace_id
    assert skill.parent is not None and skill.parent.span_id == task_span.context.span_id
    assert inner.parent is not None and inner.parent.span_id == skill.context.span_id
    assert current.span_id == skill.context.span_id
    assert skill.attributes["podium.task_id"] == task_id and skill.attributes["podium.job_id"] == job_id
    assert skill.status.is_ok


async def test_a_failed_skill_marks_its_span_failed() -> None:
    worker_spans, provider = exporter_and_provider()
    seen: list[Any] = []
    async with running_stack(tracing="console") as stack, traced_worker(stack.url, provider, seen, fail=True):
        _, status = await run_one(stack.url)
    assert status == "failed"
    skill = {s.name: s for s in worker_spans.get_finished_spans()}["skill video_transcoding"]
    assert skill.status.status_code == trace.StatusCode.ERROR
    assert "codec missing" in (skill.status.description or "")


async def test_without_server_tracing_the_skill_span_starts_its_own_trace() -> None:
    worker_spans, provider = exporter_and_provider()
    seen: list[Any] = []
    async with running_stack() as stack, traced_worker(stack.url, provider, seen):
        _, status = await run_one(stack.url)
    assert status == "finished"
    [(_, tp, _)] = seen
    assert tp is None
    skill = {s.name: s for s in worker_spans.get_finished_spans()}["skill video_transcoding"]
    assert skill.parent is None


async def test_without_opentelemetry_skills_run_untraced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sdk, "_otel", False)  # as when opentelemetry-api is not installed
    worker_spans, provider = exporter_and_provider()
    seen: list[Any] = []
    async with running_stack(tracing="console") as stack, traced_worker(stack.url, provider, seen):
        job_id, status = await run_one(stack.url)
    assert status == "finished"
    [(task_id, tp, _)] = seen
    assert tp == traceparent(job_id, task_id)  # still handed to the skill
    assert [s.name for s in worker_spans.get_finished_spans()] == ["inner"]  # the skill's own span only
