"""Serve a flow as an A2A agent over HTTP (``penguiflow_a2a``'s surface); FastAPI is imported by
``create_a2a_app`` only, so importing this package loads nothing beyond pydantic."""

from __future__ import annotations

from .server import (
    A2AAgentCard,
    A2AMessagePayload,
    A2AServerAdapter,
    A2ASkill,
    A2ATaskCancelRequest,
    create_a2a_app,
)

__all__ = [
    "A2AAgentCard",
    "A2AMessagePayload",
    "A2AServerAdapter",
    "A2ASkill",
    "A2ATaskCancelRequest",
    "create_a2a_app",
]
