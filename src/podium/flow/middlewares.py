"""Middleware hooks that receive every :class:`~podium.flow.metrics.FlowEvent`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from .metrics import FlowEvent

__all__ = ["FlowEvent", "LatencyCallback", "Middleware", "log_flow_events"]

LatencyCallback = Callable[[str, float, FlowEvent], None]

_LIFECYCLE = frozenset({"node_start", "node_success", "node_error"})


class Middleware(Protocol):
    """An async callable receiving every :class:`FlowEvent` of a flow, in order."""

    async def __call__(self, event: FlowEvent) -> None: ...


def log_flow_events(
    logger: logging.Logger | None = None,
    *,
    start_level: int = logging.INFO,
    success_level: int = logging.INFO,
    error_level: int = logging.ERROR,
    latency_callback: LatencyCallback | None = None,
) -> Middleware:
    """Return a middleware that logs ``node_start``/``node_success``/``node_error`` events.

    Args:
        logger: where to log; defaults to the ``podium.flow.flow`` logger.
        start_level: level of ``node_start`` records.
        success_level: level of ``node_success`` records.
        error_level: level of ``node_error`` records.
        latency_callback: called with ``(event_type, latency_ms, event)`` for success and error events,
            to feed a histogram without re-implementing the timing.
    """
    log = logger or logging.getLogger("podium.flow.flow")
    levels = {"node_start": start_level, "node_success": success_level, "node_error": error_level}

    async def _middleware(event: FlowEvent) -> None:
        kind = event.event_type
        if kind not in _LIFECYCLE:
            return
        payload: dict[str, Any] = event.to_payload()
        if kind == "node_error" and event.error_payload is not None:
            payload["error_payload"] = dict(event.error_payload)
        log.log(levels[kind], kind, extra=payload)
        if latency_callback is not None and kind != "node_start" and event.latency_ms is not None:
            try:
                latency_callback(kind, float(event.latency_ms), event)
            except Exception:
                log.exception(
                    "log_flow_events_latency_callback_error",
                    extra={
                        "event": "log_flow_events_latency_callback_error",
                        "node_name": event.node_name,
                        "node_id": event.node_id,
                        "trace_id": event.trace_id,
                    },
                )

    return _middleware
