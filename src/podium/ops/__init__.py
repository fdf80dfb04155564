"""Operations: the native scheduler (``schedules.toml``), rate limits, metrics.

- :mod:`podium.ops.schedules`: the file, validated strictly, and when each schedule is due (croniter, zoneinfo).
- :mod:`podium.ops.scheduler`: :class:`Scheduler`, running them on an engine once per occurrence.
- :mod:`podium.ops.metrics`: :class:`EngineMetrics`, Prometheus metrics from the engine's event stream.
- :mod:`podium.ops.tracing`: :class:`Tracing`, OpenTelemetry spans from the same events (extra ``otel``).
- :mod:`podium.ops.ratelimit`: :class:`RateLimiter`, requests per identity and operation class, in the store.
"""

from podium.ops.metrics import EngineMetrics
from podium.ops.ratelimit import RateLimited, RateLimiter, RateLimits
from podium.ops.scheduler import SCHEDULE_KIND, SCHEDULER_LOCK, Scheduler, WorkflowSubmit, workcell_submit
from podium.ops.schedules import MissedPolicy, Schedule, load_schedules
from podium.ops.tracing import Tracing, traceparent

__all__ = [
    "SCHEDULER_LOCK",
    "SCHEDULE_KIND",
    "EngineMetrics",
    "MissedPolicy",
    "RateLimited",
    "RateLimiter",
    "RateLimits",
    "Schedule",
    "Scheduler",
    "Tracing",
    "WorkflowSubmit",
    "load_schedules",
    "traceparent",
    "workcell_submit",
]
