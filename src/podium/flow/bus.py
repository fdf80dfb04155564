"""Message bus protocol: publish edge traffic for remote workers (``penguiflow.bus`` compatible)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["BusEnvelope", "InMemoryMessageBus", "MessageBus"]


@dataclass(slots=True)
class BusEnvelope:
    """One message crossing one edge (``edge`` is ``"source->target"``)."""

    edge: str
    source: str | None
    target: str | None
    trace_id: str | None
    payload: Any
    headers: Mapping[str, Any] | None
    meta: Mapping[str, Any] | None


class MessageBus(Protocol):
    """Receives every message a flow puts on an edge, before it is queued.

    Contract: ``publish`` is awaited on the sending path (so a slow bus slows the flow: that is the
    backpressure); a failing publish is logged by the runtime and the message is still delivered locally.
    """

    async def publish(self, envelope: BusEnvelope) -> None:
        """Publish an envelope for downstream workers."""


class InMemoryMessageBus:
    """A :class:`MessageBus` that records envelopes in a list (dev default and test double)."""

    def __init__(self) -> None:
        self.envelopes: list[BusEnvelope] = []

    async def publish(self, envelope: BusEnvelope) -> None:
        self.envelopes.append(envelope)
