"""podium.flow's distribution hooks on podium's own stores: a ``StateStore`` and a ``MessageBus``.

Works with any :class:`~podium.store.Store` backend (memory, SQLite today; Redis and PostgreSQL behind
the same contract):

- :class:`StoreStateStore` keeps a flow's events as history entries (subject ``flow-trace:<trace_id>``),
  so ``flow.load_history(trace_id)`` reads them back in order, and remote bindings as records of kind
  ``flow_remote_binding`` grouped by trace id, and paused ReactPlanner runs as records of kind
  ``flow_planner_pause`` keyed by resume token (so a resume works after a restart);
- :class:`StoreMessageBus` enqueues every envelope on the queue ``flow-bus:<target node>``, where remote
  workers ``take`` them with leases like any other podium queue item.

Payloads are stored as JSON: pydantic models are dumped in JSON mode, anything else that JSON cannot
hold is stored as its ``repr``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from podium.flow.bus import BusEnvelope
from podium.flow.state import RemoteBinding, StoredEvent
from podium.store.base import Store

__all__ = ["StoreMessageBus", "StoreStateStore", "bus_queue", "from_env", "trace_subject"]

BINDING_KIND = "flow_remote_binding"
PLANNER_KIND = "flow_planner_pause"


def trace_subject(trace_id: str | None) -> str:
    """The history subject holding the events of ``trace_id``."""
    return f"flow-trace:{trace_id or ''}"


def bus_queue(target: str | None) -> str:
    """The queue that receives envelopes addressed to the node ``target``."""
    return f"flow-bus:{target or '*'}"


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return repr(value)


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (models dumped, unknown objects as their repr)."""
    return json.loads(json.dumps(value, default=_json_default))


class StoreStateStore:
    """A podium.flow ``StateStore`` on a podium :class:`Store` (open the store before use)."""

    def __init__(self, store: Store, *, page_size: int = 1000) -> None:
        self.store = store
        self.page_size = page_size

    async def save_event(self, event: StoredEvent) -> None:
        await self.store.append(
            trace_subject(event.trace_id),
            event.kind,
            data={
                "trace_id": event.trace_id,
                "ts": event.ts,
                "node_name": event.node_name,
                "node_id": event.node_id,
                "payload": jsonable(dict(event.payload)),
            },
        )

    async def load_history(self, trace_id: str) -> Sequence[StoredEvent]:
        events: list[StoredEvent] = []
        after = 0
        while True:
            page = await self.store.history(trace_subject(trace_id), after_seq=after, limit=self.page_size)
            for entry in page:
                data = entry.data
                events.append(
                    StoredEvent(
                        trace_id=data.get("trace_id"),
                        ts=float(data.get("ts", entry.ts)),
                        kind=entry.event,
                        node_name=data.get("node_name"),
                        node_id=data.get("node_id"),
                        payload=data.get("payload", {}),
                    )
                )
            if len(page) < self.page_size:
                return events
            after = page[-1].seq

    async def save_remote_binding(self, binding: RemoteBinding) -> None:
        await self.store.put(
            BINDING_KIND,
            f"{binding.trace_id}:{binding.task_id}",
            {
                "trace_id": binding.trace_id,
                "context_id": binding.context_id,
                "task_id": binding.task_id,
                "agent_url": binding.agent_url,
            },
            group=binding.trace_id,
        )

    async def load_bindings(self, trace_id: str) -> Sequence[RemoteBinding]:
        """The remote bindings saved for ``trace_id``."""
        records = await self.store.list(BINDING_KIND, group=trace_id, limit=10_000)
        return [
            RemoteBinding(**{k: r.data[k] for k in ("trace_id", "context_id", "task_id", "agent_url")})
            for r in records
        ]

    async def save_planner_state(self, token: str, payload: Mapping[str, Any]) -> None:
        """Keep a paused ReactPlanner run (its trajectory and budgets) under its resume token."""
        await self.store.put(PLANNER_KIND, token, jsonable(dict(payload)))

    async def load_planner_state(self, token: str) -> dict[str, Any] | None:
        """The paused planner run saved under ``token`` (in this process or an earlier one), or ``None``."""
        record = await self.store.get(PLANNER_KIND, token)
        return None if record is None else dict(record.data)


async def from_env() -> StoreStateStore:
    """The StateStore on the store at ``$PODIUM_FLOW_STATE_URL`` (opened), for the trace tools::

        PODIUM_FLOW_STATE_URL=sqlite:///var/podium.db \\
            python -m podium.flow.admin history TRACE --state-store podium.store.flow_state:from_env
    """
    from podium.store import open_store

    url = os.environ.get("PODIUM_FLOW_STATE_URL")
    if not url:
        raise ValueError("PODIUM_FLOW_STATE_URL is not set (for example sqlite:///var/podium.db)")
    store = open_store(url)
    await store.open()
    return StoreStateStore(store)


class StoreMessageBus:
    """A podium.flow ``MessageBus`` that enqueues each envelope on a podium :class:`Store` queue."""

    def __init__(self, store: Store, *, priority: int = 0) -> None:
        self.store = store
        self.priority = priority

    async def publish(self, envelope: BusEnvelope) -> None:
        payload: dict[str, Any] = {
            "edge": envelope.edge,
            "source": envelope.source,
            "target": envelope.target,
            "trace_id": envelope.trace_id,
            "payload": jsonable(envelope.payload),
            "headers": jsonable(dict(envelope.headers)) if isinstance(envelope.headers, Mapping) else None,
            "meta": jsonable(dict(envelope.meta)) if isinstance(envelope.meta, Mapping) else None,
        }
        await self.store.enqueue(
            bus_queue(envelope.target), os.urandom(12).hex(), payload, priority=self.priority
        )
