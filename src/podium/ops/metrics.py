"""Prometheus metrics derived from the engine's event stream (one subscriber) and the workcell's.

:class:`EngineMetrics` subscribes once to an engine (only the event types it reads, so nothing else is
built) and keeps counters, histograms and gauges; a workcell is attached through its listener list the same
way. Avtomatika's names where it has them (``orchestrator_*``), podium's otherwise. Labels take bounded values
only: blueprint names, task types, statuses, node and action names; never job, task or workflow ids.

Gauges derived from events (``orchestrator_task_queue_length``, ``podium_tasks_running``,
``podium_jobs_active``) count what *this instance* saw happen: with several instances on one store a task
dispatched by one and taken by another moves one instance's gauge up and the other's down; sum them over
instances (``sum without (instance)``). To follow a task or a job from one event to the next the subscriber
keeps its type (or blueprint) and times by id while it is open, at most :data:`MAX_TRACKED` of each (the
oldest are dropped first).

========================================================  =========  ==================================
metric                                                    type       labels
========================================================  =========  ==================================
``orchestrator_jobs_total``                               counter    blueprint (jobs created)
``orchestrator_jobs_failed_total``                        counter    blueprint (failed or quarantined)
``orchestrator_job_duration_seconds``                     histogram  blueprint, status (created -> end)
``orchestrator_task_queue_length``                        gauge      task_type (queued, not yet taken)
``orchestrator_jobs_timeouts_total``                      counter    task_type, type (dispatch/result)
``orchestrator_scheduler_jobs_triggered_total``           counter    blueprint (scheduled jobs)
``podium_jobs_ended_total``                               counter    blueprint, status
``podium_jobs_active``                                    gauge      blueprint
``podium_tasks_dispatched_total``                         counter    task_type
``podium_task_wait_seconds``                              histogram  task_type (dispatched -> taken)
``podium_task_run_seconds``                               histogram  task_type, status (taken -> result)
``podium_task_retries_total``                             counter    task_type
``podium_tasks_running``                                  gauge      task_type
``podium_workflow_steps_total``                           counter    node, action, status
``podium_workflow_step_seconds``                          histogram  node, action
``podium_workflows_ended_total``                          counter    status
``podium_workcell_node_status``                           gauge      node, status (1 for the current one)
``podium_store_commit_seconds``                           histogram  (the engine's store writes)
========================================================  =========  ==================================
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from podium.engine.engine import OrchestratorEngine
from podium.engine.models import EngineEvent

if TYPE_CHECKING:
    from podium.ops.scheduler import Scheduler
    from podium.workcell import WorkcellEngine

__all__ = ["ENGINE_EVENT_TYPES", "MAX_TRACKED", "EngineMetrics"]

MAX_TRACKED = 100_000
"""Open jobs and tasks the subscriber remembers (blueprint, task type, times) to label their later events."""

ENGINE_EVENT_TYPES = frozenset(
    {
        "job_created",
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
"""The engine events the metrics read (events of other types are not even built for them)."""

_RECENT = 1024
_TERMINAL_WORKFLOW = {"completed": "completed", "failed": "failed", "cancelled": "cancelled"}
_LATENCY = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class _Family(Collector):
    """One metric's samples as plain numbers, turned into a Prometheus family only when scraped: an update
    on the event path is a dict operation (prometheus_client's metrics take a lock on every update)."""

    def __init__(
        self, kind: str, name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...] = ()
    ) -> None:
        self.kind, self.name, self.doc, self.labels, self.buckets = kind, name, doc, labels, buckets
        self.values: dict[tuple[str, ...], float] = {}
        self.hist: dict[tuple[str, ...], list[float]] = {}  # per label set: bucket counts..., sum

    def inc(self, labels: tuple[str, ...], by: float = 1.0) -> None:
        values = self.values
        values[labels] = values.get(labels, 0.0) + by

    def observe(self, labels: tuple[str, ...], x: float) -> None:
        h = self.hist.get(labels)
        if h is None:
            h = self.hist[labels] = [0.0] * (len(self.buckets) + 2)
        h[bisect.bisect_left(self.buckets, x)] += 1
        h[-1] += x

    def collect(self) -> Iterator[Metric]:
        labels = list(self.labels)
        if self.kind == "histogram":
            hist = HistogramMetricFamily(self.name, self.doc, labels=labels)
            bounds = [*map(str, self.buckets), "+Inf"]
            for key, h in sorted(self.hist.items()):
                cumulative, buckets = 0.0, []
                for bound, n in zip(bounds, h[:-1], strict=True):
                    cumulative += n
                    buckets.append((bound, cumulative))
                hist.add_metric(list(key), buckets, h[-1])
            yield hist
            return
        family = (CounterMetricFamily if self.kind == "counter" else GaugeMetricFamily)(
            self.name, self.doc, labels=labels
        )
        for key, v in sorted(self.values.items()):
            family.add_metric(list(key), v)
        yield family


def _remember(table: dict[str, Any], key: str, value: Any) -> None:
    table[key] = value
    if len(table) > MAX_TRACKED:
        del table[next(iter(table))]


class _CommitLatency(Collector):
    """``podium_store_commit_seconds`` read from the engine's :class:`~podium.engine.core.CommitStats`."""

    def __init__(self, engines: list[OrchestratorEngine]) -> None:
        self.engines = engines

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily("podium_store_commit_seconds", "Latency of the engine's store writes")
        for engine in self.engines:
            stats = engine.commit_stats
            cumulative, buckets = 0, []
            for bound, n in zip([*map(str, stats.bounds), "+Inf"], stats.buckets, strict=True):
                cumulative += n
                buckets.append((bound, cumulative))
            family.add_metric([], buckets, stats.total_s)
        yield family


class _StateCollector(Collector):
    """Values read from live objects at scrape time: the scheduler's counts, the workcell's node statuses."""

    def __init__(self) -> None:
        self.schedulers: list[Scheduler] = []
        self.workcells: list[WorkcellEngine] = []

    def collect(self) -> Iterator[Metric]:
        triggered = CounterMetricFamily(
            "orchestrator_scheduler_jobs_triggered",
            "Jobs started by the scheduler",
            labels=["blueprint"],
        )
        for scheduler in self.schedulers:
            for target, n in sorted(scheduler.triggered.items()):
                triggered.add_metric([target], n)
        yield triggered
        nodes = GaugeMetricFamily(
            "podium_workcell_node_status",
            "Workcell nodes by status (1: the current one)",
            labels=["node", "status"],
        )
        for workcell in self.workcells:
            for name, node in sorted(workcell.nodes.items()):
                nodes.add_metric([name, _node_status(node)], 1.0)
        yield nodes


_NODE_FLAGS = ("disconnected", "errored", "stopped", "locked", "paused", "initializing", "busy", "ready")


def _node_status(node: Any) -> str:
    """The first of :data:`_NODE_FLAGS` a node's last status (MADSci's NodeStatus as JSON) has set."""
    status = node.status if isinstance(node.status, dict) else None
    if status is None:
        return "unknown"
    for flag in _NODE_FLAGS:
        if status.get(flag):
            return flag
    return "idle"


class EngineMetrics:
    """Metrics of one engine (and optionally a workcell and a scheduler) in ``registry`` (see the module
    docstring). :meth:`attach` subscribes to the engine; :meth:`close` unsubscribes. Listeners are quick: a
    few dict operations and a metric update per event."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry

        def family(kind: str, name: str, doc: str, *labels: str, buckets: tuple[float, ...] = ()) -> _Family:
            f = _Family(kind, name, doc, labels, buckets)
            r.register(f)
            return f

        self.jobs_created = family("counter", "orchestrator_jobs_total", "Jobs created", "blueprint")
        self.jobs_failed = family(
            "counter", "orchestrator_jobs_failed_total", "Jobs failed or quarantined", "blueprint"
        )
        self.job_duration = family(
            "histogram",
            "orchestrator_job_duration_seconds",
            "Job duration, created to end",
            "blueprint",
            "status",
            buckets=_LATENCY,
        )
        self.jobs_ended = family("counter", "podium_jobs_ended_total", "Jobs ended", "blueprint", "status")
        self.jobs_active = family(
            "gauge", "podium_jobs_active", "Jobs open (sum over instances)", "blueprint"
        )
        self.queue_length = family(
            "gauge", "orchestrator_task_queue_length", "Tasks queued, not yet taken", "task_type"
        )
        self.timeouts = family(
            "counter", "orchestrator_jobs_timeouts_total", "Task timeouts", "task_type", "type"
        )
        self.dispatched = family("counter", "podium_tasks_dispatched_total", "Tasks dispatched", "task_type")
        self.task_wait = family(
            "histogram", "podium_task_wait_seconds", "Task queue time", "task_type", buckets=_LATENCY
        )
        self.task_run = family(
            "histogram",
            "podium_task_run_seconds",
            "Task run time, taken to result",
            "task_type",
            "status",
            buckets=_LATENCY,
        )
        self.retries = family("counter", "podium_task_retries_total", "Task retries", "task_type")
        self.running = family("gauge", "podium_tasks_running", "Tasks taken, no result yet", "task_type")
        self.steps = family(
            "counter", "podium_workflow_steps_total", "Workflow steps ended", "node", "action", "status"
        )
        self.step_seconds = family(
            "histogram",
            "podium_workflow_step_seconds",
            "Workflow step duration",
            "node",
            "action",
            buckets=_LATENCY,
        )
        self.workflows_ended = family(
            "counter", "podium_workflows_ended_total", "Workflow runs ended", "status"
        )
        self._engines: list[OrchestratorEngine] = []
        r.register(_CommitLatency(self._engines))
        self._state = _StateCollector()
        r.register(self._state)
        self._jobs: dict[str, tuple[str, float]] = {}  # job id -> (blueprint, created_at)
        self._tasks: dict[str, list[Any]] = {}  # task id -> [task_type, dispatched_at, taken_at | None]
        self._ended: dict[str, str] = {}  # task id -> type, of the last tasks that ended (for task_retry)
        self._steps_seen: dict[str, int] = {}  # workflow id -> steps already counted
        self._detach: list[Callable[[], None]] = []

    # --- attaching --------------------------------------------------------------------------------

    def attach(self, engine: OrchestratorEngine) -> None:
        """Subscribe to ``engine``'s events (once) and read its store-commit latency."""
        self._engines.append(engine)
        self._detach.append(engine.subscribe(self.on_event, types=ENGINE_EVENT_TYPES))

    def attach_workcell(self, workcell: WorkcellEngine) -> None:
        """Follow a workcell's workflow runs (steps by node and action) and its nodes' statuses."""
        workcell.listeners.append(self.on_workflow)
        self._state.workcells.append(workcell)

        def detach() -> None:
            if self.on_workflow in workcell.listeners:
                workcell.listeners.remove(self.on_workflow)

        self._detach.append(detach)

    def attach_scheduler(self, scheduler: Scheduler) -> None:
        """Count the jobs ``scheduler`` starts (``orchestrator_scheduler_jobs_triggered_total``)."""
        self._state.schedulers.append(scheduler)

    def close(self) -> None:
        """Unsubscribe from everything attached. Idempotent."""
        for detach in self._detach:
            detach()
        self._detach.clear()
        self._engines.clear()
        self._state.schedulers.clear()
        self._state.workcells.clear()

    # --- the engine's events ----------------------------------------------------------------------

    def on_event(self, ev: EngineEvent) -> None:
        """One engine event (the subscriber)."""
        t = ev.type
        data = ev.data
        if t == "task_dispatched":
            task_type = data.get("task_type", "unknown")
            if ev.task_id is not None:
                _remember(self._tasks, ev.task_id, [task_type, ev.ts, None])
            self.dispatched.inc((task_type,))
            self.queue_length.inc((task_type,))
        elif t == "task_taken":
            entry = self._tasks.get(ev.task_id or "")
            if entry is not None:
                if entry[2] is None:
                    self.queue_length.inc((entry[0],), -1.0)
                else:
                    self.running.inc((entry[0],), -1.0)  # taken again (its lease lapsed): one run at a time
                self.task_wait.observe((entry[0],), max(0.0, ev.ts - entry[1]))
                entry[2] = ev.ts
                self.running.inc((entry[0],))
        elif t in ("task_completed", "task_timeout", "task_cancelled"):
            self._task_ended(ev)
        elif t == "task_retry":
            # follows the failed attempt's task_completed (same commit): the task is queued again
            task_type = self._ended.pop(ev.task_id or "", None)
            if task_type is not None and ev.task_id is not None:
                self.retries.inc((task_type,))
                self.queue_length.inc((task_type,))
                _remember(self._tasks, ev.task_id, [task_type, ev.ts, None])
        elif t == "job_created":
            blueprint = data.get("blueprint", "unknown")
            if ev.job_id is not None:
                _remember(self._jobs, ev.job_id, (blueprint, ev.ts))
            self.jobs_created.inc((blueprint,))
            self.jobs_active.inc((blueprint,))
        else:  # job_finished, job_failed, job_cancelled, job_quarantined
            self._job_ended(ev)

    def _task_ended(self, ev: EngineEvent) -> None:
        entry = self._tasks.pop(ev.task_id or "", None)
        if entry is None:
            return
        task_type, _, taken = entry
        self._ended[ev.task_id or ""] = task_type  # a task_retry may follow
        if len(self._ended) > _RECENT:
            del self._ended[next(iter(self._ended))]
        if taken is None:
            self.queue_length.inc((task_type,), -1.0)
        else:
            self.running.inc((task_type,), -1.0)
        if ev.type == "task_timeout":
            self.timeouts.inc((task_type, str(ev.data.get("kind") or "result_timeout")))
        elif ev.type == "task_completed" and taken is not None:
            self.task_run.observe((task_type, str(ev.status or "unknown")), max(0.0, ev.ts - taken))

    def _job_ended(self, ev: EngineEvent) -> None:
        status = ev.type[4:]
        data = ev.data
        known = self._jobs.pop(ev.job_id or "", None)
        blueprint = data.get("blueprint") or (known[0] if known is not None else "unknown")
        created = data.get("created_at") or (known[1] if known is not None else None)
        self.jobs_ended.inc((blueprint, status))
        self.jobs_active.inc((blueprint,), -1.0)
        if status in ("failed", "quarantined"):
            self.jobs_failed.inc((blueprint,))
        if created is not None:
            self.job_duration.observe((blueprint, status), max(0.0, ev.ts - created))

    # --- the workcell's runs ----------------------------------------------------------------------

    def on_workflow(self, event: str, wf: Any) -> None:
        """One workcell event (its listener): count the steps that ended since the last one, and the run."""
        seen = self._steps_seen.get(wf.workflow_id, 0)
        steps = wf.steps
        n = seen
        while n < len(steps) and steps[n].end_time is not None:
            step = steps[n]
            status = getattr(step.status, "value", str(step.status))
            self.steps.inc((step.node or "none", step.action or "none", status))
            if step.duration is not None:
                seconds = (
                    step.duration.total_seconds()
                    if hasattr(step.duration, "total_seconds")
                    else step.duration
                )
                self.step_seconds.observe(
                    (step.node or "none", step.action or "none"), max(0.0, float(seconds))
                )
            n += 1
        if event in _TERMINAL_WORKFLOW:
            self._steps_seen.pop(wf.workflow_id, None)
            self.workflows_ended.inc((_TERMINAL_WORKFLOW[event],))
        elif n != seen:
            _remember(self._steps_seen, wf.workflow_id, n)
