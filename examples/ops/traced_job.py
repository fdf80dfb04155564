"""A traced job: OpenTelemetry spans for a job, each state it entered and its task (with the retry as an event),
printed as the span tree (extra ``otel``: ``pip install 'podium[otel]'``).

In production, ``podium serve --tracing otlp`` sends the same spans to your collector (``OTEL_EXPORTER_OTLP_*``),
and remote workers get each task's ``traceparent`` so their spans join the job's trace.

    python examples/ops/traced_job.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from podium.engine import ActionFactory, Blueprint, Config, InProcessWorker, OrchestratorEngine, TaskError
from podium.engine.storage import MemoryStorage
from podium.ops import Tracing

convert = Blueprint("convert")


@convert.handler(is_start=True)
async def start(actions: ActionFactory) -> None:
    actions.go_to("work")


@convert.handler
async def work(actions: ActionFactory) -> None:
    actions.dispatch_task("convert", {"file": "plate-7.csv"}, transitions={"success": "done"})


@convert.handler(is_end=True)
async def done() -> None: ...


async def flaky(params: dict[str, Any], attempt: int) -> dict[str, Any]:
    if attempt == 1:
        raise TaskError("TRANSIENT_ERROR", "network blip")  # retried: an event on the task's span
    return {"status": "success", "data": {"rows": 96}}


async def main() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing(SimpleSpanProcessor(exporter))
    engine = OrchestratorEngine(MemoryStorage(), Config(RETRY_BACKOFF_BASE_S=0.01), serve_http=False)
    engine.register_blueprint(convert)
    engine.add_worker(InProcessWorker("w1", skills={"convert": flaky}))
    tracing.attach(engine)
    async with engine:
        job_id = await engine.create_job("convert")
        job = await engine.wait_for_job(job_id, timeout_s=30)
    tracing.close()
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    print(f"job {job_id}: {job.status}; {len(spans)} spans in trace {spans[0].context.trace_id:032x}")

    def show(span: Any, depth: int) -> None:
        events = ", ".join(e.name for e in span.events)
        took = (span.end_time - span.start_time) / 1e6
        print(f"{'  ' * depth}{span.name} ({took:.1f} ms){' [' + events + ']' if events else ''}")
        for child in sorted(
            (s for s in spans if s.parent is not None and s.parent.span_id == span.context.span_id),
            key=lambda s: s.start_time,
        ):
            show(child, depth + 1)

    for root in (s for s in spans if s.parent is None or s.parent.span_id not in by_id):
        show(root, 0)


if __name__ == "__main__":
    asyncio.run(main())
