"""Developer-facing debugging helpers."""

from __future__ import annotations

from typing import Any

from .metrics import FlowEvent

__all__ = ["format_flow_event"]


def format_flow_event(event: FlowEvent) -> dict[str, Any]:
    """Return a flat dictionary for logging: the event payload plus ``flow_error_*`` keys if it failed."""
    payload = dict(event.to_payload())
    error_payload = event.error_payload
    if error_payload is not None:
        payload["flow_error"] = dict(error_payload)
        for key, value in error_payload.items():
            payload[f"flow_error_{key}"] = value
    return payload
