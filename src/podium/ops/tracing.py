"""OpenTelemetry tracing (extra ``otel``): a span per job, state, task, workflow step and flow node.

Spans are built from the event streams (the engine's, one subscriber; a workcell's run events; a flow's
middleware events), after the fact, with the start and end times the events carry. Their ids are *derived*:
a job's trace id is its ULID's 128 bits, a span id is a hash of what the span is (``job:<id>``,
``task:<id>``, ...). So anyone who knows a job and a task id can name the task's span without asking a tracer:
the server hands remote workers a W3C ``traceparent`` in the task's ``tracing_context`` (:func:`traceparent`),
and the workcell can hand one to nodes, with no state shared between instances.

Span tree of one job::

    job <blueprint>                      (trace id = the job id)
    ├── state <name>                     (one per state the job entered)
    └── task <task_type>                 (one per task; attempts are events on it)
        └── (the remote worker's spans, parented by the traceparent it was given)

A workflow run is a job of the workcell's engine: its steps are spans ``step <node>.<action>`` under it.
Flow nodes: ``node <name>`` spans in a trace derived from the flow's trace id.

An instance traces the jobs it saw created (with several instances on one store, a job another instance
created and this one finished has no span here), and keeps at most 100,000 open jobs and tasks in memory.

``opentelemetry-sdk`` is imported when :class:`Tracing` is built: ``pip install 'podium[otel]'``.
:meth:`Tracing.from_exporter` builds one from a setting (``podium serve --tracing otlp|console``, ``TRACING``):
``otlp`` sends spans in batches to the OTLP/HTTP collector the standard ``OTEL_EXPORTER_OTLP_*`` environment
names (default ``http://localhost:4318``), ``console`` prints each span as JSON on stdout; the service name is
``OTEL_SERVICE_NAME`` (default ``podium``).
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from podium.engine.engine import OrchestratorEngine
from podium.engine.models import EngineEvent
from podium.errors import ConfigError, MissingDependencyError
from podium.ids import span_id_of, trace_id_of, traceparent_of

if TYPE_CHECKING:
    from podium.workcell import WorkcellEngine

__all__ = ["EXPORTERS", "TRACED_EVENTS", "Tracing", "span_id", "trace_id", "traceparent"]

TRACED_EVENTS = frozenset(
    {
        "job_created",
        "transition",
        "job_waiting",
        "job_finished",
        "job_failed",
        "job_cancelled",
        "job_quarantined",
        "task_dispatched",
        "task_taken",
        "task_completed",
        "task_retry",
        "task_timeout",
        "task_cancelled",
    }
)
EXPORTERS = ("otlp", "console")
"""The exporters :meth:`Tracing.from_exporter` knows."""
_MAX_OPEN = 100_000
_next_ids: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "podium_span_ids", default=None
)


def trace_id(key: str) -> int:
    """The trace id of a job (its ULID's 128 bits) or of anything else (a hash of ``key``)."""
    return trace_id_of(key)


def span_id(key: str) -> int:
    """The span id of ``key`` (``job:<id>``, ``task:<id>``, ...): 64 bits of its hash, never 0."""
    return span_id_of(key)


def traceparent(job_id: str, task_id: str) -> str:
    """The W3C ``traceparent`` naming a task's span (sampled), for a remote worker's ``tracing_context``."""
    return traceparent_of(job_id, f"task:{task_id}")


def _sdk() -> Any:
    try:
        from opentelemetry.sdk import trace as sdk_trace
    except ImportError:
        raise MissingDependencyError("opentelemetry-sdk", "otel") from None
    return sdk_trace


def _ns(ts: float) -> int:
    return int(ts * 1e9)


class Tracing:
    """Spans of jobs, states, tasks, workflow steps and flow nodes (see the module docstring) sent to
    ``processor`` (an OpenTelemetry ``SpanProcessor``, e.g. ``BatchSpanProcessor(OTLPSpanExporter())`` or, in
    tests, ``SimpleSpanProcessor(InMemorySpanExporter())``). It has its own tracer provider, whose ids are
    the derived ones."""

    def __init__(self, processor: Any, *, service_name: str = "podium") -> None:
        sdk_trace = _sdk()
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.id_generator import IdGenerator

        class DerivedIds(IdGenerator):
            """The ids :class:`Tracing` chose for the span being started (random ones otherwise)."""

            def __init__(self) -> None:
                self.random = sdk_trace.RandomIdGenerator()

            def generate_span_id(self) -> int:
                ids = _next_ids.get()
                return ids[1] if ids is not None else int(self.random.generate_span_id())

            def generate_trace_id(self) -> int:
                ids = _next_ids.get()
                return ids[0] if ids is not None else int(self.random.generate_trace_id())

        self.provider = sdk_trace.TracerProvider(
            id_generator=DerivedIds(), resource=Resource.create({"service.name": service_name})
        )
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("podium")
        self._jobs: dict[str, dict[str, Any]] = {}  # job id -> {"bp", "start", "state", "state_start"}
        self._tasks: dict[str, dict[str, Any]] = {}  # task id -> {"type", "job", "start", "events"}
        self._steps: dict[str, int] = {}
        self._flow_nodes: dict[tuple[Any, ...], float] = {}
        self._detach: list[Callable[[], None]] = []

    @classmethod
    def from_exporter(cls, exporter: str, *, out: Any = None) -> Tracing:
        """A :class:`Tracing` sending its spans to ``exporter`` (one of :data:`EXPORTERS`; see the module
        docstring). ``out``: where ``console`` writes (stdout by default). Raises
        :class:`~podium.errors.ConfigError` for an unknown exporter and
        :class:`~podium.errors.MissingDependencyError` when its package is not installed."""
        if exporter not in EXPORTERS:
            raise ConfigError(f"tracing: unknown exporter {exporter!r} (one of {', '.join(EXPORTERS)})")
        _sdk()
        from opentelemetry.sdk.trace import export

        processor: Any
        if exporter == "console":
            import sys

            console = export.ConsoleSpanExporter(out=out if out is not None else sys.stdout)
            processor = export.SimpleSpanProcessor(console)
        else:
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            except ImportError:
                raise MissingDependencyError("opentelemetry-exporter-otlp-proto-http", "otel") from None
            processor = export.BatchSpanProcessor(OTLPSpanExporter())  # reads OTEL_EXPORTER_OTLP_*
        return cls(processor, service_name=os.environ.get("OTEL_SERVICE_NAME") or "podium")

    # --- spans ------------------------------------------------------------------------------------

    def _span(
        self,
        name: str,
        trace: int,
        span: int,
        parent: int | None,
        start: float,
        end: float,
        attributes: Mapping[str, Any],
        *,
        error: str | None = None,
        events: list[tuple[str, float, dict[str, Any]]] = (),  # type: ignore[assignment]
    ) -> None:
        from opentelemetry import trace as otel
        from opentelemetry.context import Context

        context = Context()  # a root span unless a parent is named (not whatever span is current)
        if parent is not None:
            parent_ctx = otel.SpanContext(trace, parent, is_remote=False, trace_flags=otel.TraceFlags(1))
            context = otel.set_span_in_context(otel.NonRecordingSpan(parent_ctx))
        token = _next_ids.set((trace, span))
        try:
            s = self.tracer.start_span(
                name, context=context, start_time=_ns(start), attributes=dict(attributes)
            )
        finally:
            _next_ids.reset(token)
        for event_name, ts, attrs in events:
            s.add_event(event_name, attrs, timestamp=_ns(ts))
        if error is not None:
            s.set_status(otel.Status(otel.StatusCode.ERROR, error))
        s.end(end_time=_ns(max(start, end)))

    @staticmethod
    def traceparent(job_id: str, task_id: str) -> str:
        """The W3C ``traceparent`` of a task's span (:func:`traceparent`)."""
        return traceparent(job_id, task_id)

    # --- the engine -------------------------------------------------------------------------------

    def attach(self, engine: OrchestratorEngine) -> None:
        """Subscribe to ``engine``'s events (once)."""
        self._detach.append(engine.subscribe(self.on_event, types=TRACED_EVENTS))

    def on_event(self, ev: EngineEvent) -> None:
        """One engine event (the subscriber)."""
        t, job_id = ev.type, ev.job_id
        if t == "job_created" and job_id is not None:
            self._jobs[job_id] = {"bp": ev.data.get("blueprint", "?"), "start": ev.ts, "state": ev.state}
            self._jobs[job_id]["state_start"] = ev.ts
            if len(self._jobs) > _MAX_OPEN:
                del self._jobs[next(iter(self._jobs))]
        elif t in ("transition", "job_waiting"):
            job = self._jobs.get(job_id or "")
            if job is not None and ev.state != job["state"]:
                self._end_state(job_id or "", job, ev.ts)
                job["state"], job["state_start"] = ev.state, ev.ts
        elif t.startswith("job_"):
            job = self._jobs.pop(job_id or "", None)
            if job is not None and job_id is not None:
                self._end_state(job_id, job, ev.ts)
                status = t[4:]
                error = ev.data.get("error")
                self._span(
                    f"job {job['bp']}",
                    trace_id(job_id),
                    span_id(f"job:{job_id}"),
                    None,
                    job["start"],
                    ev.ts,
                    {"podium.job_id": job_id, "podium.blueprint": job["bp"], "podium.status": status},
                    error=str(error.get("message", error)) if isinstance(error, dict) else None,
                )
        else:
            self._on_task(ev)

    def _end_state(self, job_id: str, job: dict[str, Any], ts: float) -> None:
        state = job.get("state")
        if state is None:
            return
        start = job["state_start"]
        self._span(
            f"state {state}",
            trace_id(job_id),
            span_id(f"state:{job_id}:{state}:{start!r}"),
            span_id(f"job:{job_id}"),
            start,
            ts,
            {"podium.job_id": job_id, "podium.state": state},
        )

    def _on_task(self, ev: EngineEvent) -> None:
        task_id, t = ev.task_id, ev.type
        if task_id is None:
            return
        if t == "task_dispatched":
            self._tasks[task_id] = {
                "type": ev.data.get("task_type", "?"),
                "job": ev.job_id,
                "start": ev.ts,
                "events": [],
            }
            if len(self._tasks) > _MAX_OPEN:
                del self._tasks[next(iter(self._tasks))]
            return
        task = self._tasks.get(task_id)
        if task is None:
            return
        if t == "task_taken":
            task["events"].append(("taken", ev.ts, {"podium.worker_id": str(ev.data.get("worker_id"))}))
        elif t == "task_retry":
            self._tasks[task_id] = task
            task["events"].append(("retry", ev.ts, {"podium.attempt": int(ev.data.get("attempt", 0))}))
        elif t in ("task_completed", "task_timeout", "task_cancelled"):
            result = ev.data.get("result") or {}
            if t == "task_completed" and result.get("status") == "failure":
                task["events"].append(("attempt failed", ev.ts, {"podium.error": str(result.get("error"))}))
                return  # a task_retry may follow; the span ends with the task
            self._tasks.pop(task_id, None)
            job_id = task["job"] or ""
            error = None if t == "task_completed" else t[5:]
            self._span(
                f"task {task['type']}",
                trace_id(job_id),
                span_id(f"task:{task_id}"),
                span_id(f"job:{job_id}"),
                task["start"],
                ev.ts,
                {
                    "podium.job_id": job_id,
                    "podium.task_id": task_id,
                    "podium.task_type": task["type"],
                    "podium.status": str(ev.status or t[5:]),
                },
                error=error,
                events=task["events"],
            )

    # --- the workcell and flows -------------------------------------------------------------------

    def attach_workcell(self, workcell: WorkcellEngine) -> None:
        """Span each workflow step (``step <node>.<action>``) under its run's job span."""
        workcell.listeners.append(self.on_workflow)

        def detach() -> None:
            if self.on_workflow in workcell.listeners:
                workcell.listeners.remove(self.on_workflow)

        self._detach.append(detach)

    def on_workflow(self, event: str, wf: Any) -> None:
        """One workcell event: a span for each step that ended since the last one."""
        seen = self._steps.get(wf.workflow_id, 0)
        n = seen
        while n < len(wf.steps) and wf.steps[n].end_time is not None:
            step = wf.steps[n]
            if step.start_time is not None:
                status = getattr(step.status, "value", str(step.status))
                self._span(
                    f"step {step.node}.{step.action}",
                    trace_id(wf.workflow_id),
                    span_id(f"step:{wf.workflow_id}:{n}"),
                    span_id(f"job:{wf.workflow_id}"),
                    step.start_time.timestamp(),
                    step.end_time.timestamp(),
                    {
                        "podium.workflow_id": wf.workflow_id,
                        "podium.step_index": n,
                        "podium.node": str(step.node),
                        "podium.action": str(step.action),
                        "podium.status": status,
                    },
                    error=None if status == "succeeded" else status,
                )
            n += 1
        if event in ("completed", "failed", "cancelled"):
            self._steps.pop(wf.workflow_id, None)
        elif n != seen:
            self._steps[wf.workflow_id] = n

    def flow_middleware(self) -> Callable[[Any], Any]:
        """A :mod:`podium.flow` middleware: a span per node run (``node <name>``), in a trace per flow trace."""

        async def middleware(event: Any) -> None:
            key = (event.trace_id, event.node_id, event.attempt)
            if event.event_type == "node_start":
                self._flow_nodes[key] = event.ts
                return
            if event.event_type not in ("node_success", "node_error", "node_timeout"):
                return
            start = self._flow_nodes.pop(key, None)
            if start is None:
                return
            trace = str(event.trace_id or "flow")
            self._span(
                f"node {event.node_name}",
                trace_id(trace),
                span_id(f"node:{trace}:{event.node_id}:{event.attempt}:{start!r}"),
                None,
                start,
                event.ts,
                {
                    "podium.flow.trace_id": trace,
                    "podium.flow.node": str(event.node_name),
                    "podium.attempt": event.attempt,
                },
                error=None if event.event_type == "node_success" else event.event_type,
            )

        return middleware

    def close(self) -> None:
        """Unsubscribe and flush the spans. Idempotent."""
        for detach in self._detach:
            detach()
        self._detach.clear()
        self.provider.force_flush()
