"""A flow as an A2A agent over HTTP (``penguiflow_a2a``'s surface), and the HTTP transport that lets a
``RemoteNode`` call such an agent. FastAPI is imported by ``create_a2a_app`` and httpx by
``A2AHttpTransport()`` only, so importing this package loads nothing beyond pydantic."""

from __future__ import annotations

from .client import A2AClientError, A2AHttpTransport
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
    "A2AClientError",
    "A2AHttpTransport",
    "A2AMessagePayload",
    "A2AServerAdapter",
    "A2ASkill",
    "A2ATaskCancelRequest",
    "create_a2a_app",
]
