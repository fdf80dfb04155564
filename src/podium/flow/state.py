"""State store protocol: persist runtime events and remote bindings (``penguiflow.state`` compatible).

A flow created with ``state_store=...`` saves every :class:`~podium.flow.metrics.FlowEvent` as a
:class:`StoredEvent` and every remote binding; ``flow.load_history(trace_id)`` reads a trace back.
:class:`InMemoryStateStore` is the in-process implementation (dev default and test double); podium's own
stores provide durable ones (``podium.store.flow_state``).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .metrics import FlowEvent

__all__ = ["InMemoryStateStore", "RemoteBinding", "StateStore", "StoredEvent"]


@dataclass(slots=True)
class StoredEvent:
    """A runtime event as persisted by a state store."""

    trace_id: str | None
    ts: float
    kind: str
    node_name: str | None
    node_id: str | None
    payload: Mapping[str, Any]

    @classmethod
    def from_flow_event(cls, event: FlowEvent) -> StoredEvent:
        """Create the stored form of ``event``."""
        return cls(
            trace_id=event.trace_id,
            ts=event.ts,
            kind=event.event_type,
            node_name=event.node_name,
            node_id=event.node_id,
            payload=event.to_payload(),
        )


@dataclass(slots=True)
class RemoteBinding:
    """Association between a trace and a task on a remote agent."""

    trace_id: str
    context_id: str
    task_id: str
    agent_url: str


class StateStore(Protocol):
    """Where a flow persists its history.

    Contract: ``save_event`` may be called again with an equal event (retries) and must tolerate it;
    ``load_history`` returns the events of one trace in the order they were saved; a failing call is
    logged by the runtime and never stops the flow.
    """

    async def save_event(self, event: StoredEvent) -> None:
        """Persist one runtime event."""

    async def load_history(self, trace_id: str) -> Sequence[StoredEvent]:
        """Return the ordered history of ``trace_id``."""

    async def save_remote_binding(self, binding: RemoteBinding) -> None:
        """Persist the mapping between a trace and a remote task."""


class InMemoryStateStore:
    """A :class:`StateStore` that keeps everything in process memory."""

    def __init__(self) -> None:
        self._events: defaultdict[str | None, list[StoredEvent]] = defaultdict(list)
        self.bindings: list[RemoteBinding] = []
        self._planner_state: dict[str, dict[str, Any]] = {}

    async def save_event(self, event: StoredEvent) -> None:
        self._events[event.trace_id].append(event)

    async def load_history(self, trace_id: str) -> Sequence[StoredEvent]:
        return list(self._events.get(trace_id, ()))

    async def save_remote_binding(self, binding: RemoteBinding) -> None:
        self.bindings.append(binding)

    async def load_bindings(self, trace_id: str) -> Sequence[RemoteBinding]:
        """Return the remote bindings saved for ``trace_id``."""
        return [binding for binding in self.bindings if binding.trace_id == trace_id]

    async def save_planner_state(self, token: str, payload: Mapping[str, Any]) -> None:
        """Keep a paused planner run under its resume token (a copy: later changes do not leak in)."""
        self._planner_state[token] = copy.deepcopy(dict(payload))

    async def load_planner_state(self, token: str) -> dict[str, Any] | None:
        """The paused planner run saved under ``token``, or ``None``."""
        payload = self._planner_state.get(token)
        return None if payload is None else copy.deepcopy(payload)
