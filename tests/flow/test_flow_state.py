"""podium.flow's StateStore and MessageBus on podium's own stores (memory and SQLite)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from podium.flow import Message, Node, NodePolicy, RemoteBinding, create
from podium.store import MemoryStore, Store
from podium.store.flow_state import StoreMessageBus, StoreStateStore, bus_queue
from podium.store.sqlite import SQLiteStore
from tests.flow.helpers import identity, msg


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    backend: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "podium.db")
    async with backend:
        yield backend


async def test_events_are_persisted_and_read_back_per_trace(store: Store) -> None:
    state = StoreStateStore(store, page_size=3)  # small pages exercise the paging
    a, b = Node(identity, name="a", policy=NodePolicy(validate="none")), Node(identity, name="b")
    flow = create(a.to(b), b.to(), state_store=state)
    flow.run()
    try:
        first, second = msg({"n": 1}), msg({"n": 2})
        for message in (first, second):
            await flow.emit(message)
            await asyncio.wait_for(flow.fetch(), 1)
        history = await flow.load_history(first.trace_id)
    finally:
        await flow.stop()
    assert [(e.kind, e.node_name) for e in history] == [
        ("node_start", "a"),
        ("node_success", "a"),
        ("node_start", "b"),
        ("node_success", "b"),
    ]
    assert all(e.trace_id == first.trace_id for e in history)
    assert history[1].payload["latency_ms"] >= 0 and history[0].ts <= history[-1].ts
    assert len(await state.load_history(second.trace_id)) == 4


async def test_remote_bindings_round_trip(store: Store) -> None:
    state = StoreStateStore(store)
    binding = RemoteBinding(trace_id="t1", context_id="c", task_id="task", agent_url="https://agent")
    await state.save_remote_binding(binding)
    await state.save_remote_binding(binding)  # idempotent
    assert await state.load_bindings("t1") == [binding]
    assert await state.load_bindings("t2") == []


async def test_message_bus_enqueues_each_edge_crossing_for_remote_workers(store: Store) -> None:
    flow = create(
        Node(identity, name="echo", policy=NodePolicy(validate="none")).to(),
        message_bus=StoreMessageBus(store),
    )
    flow.run()
    try:
        message = msg({"q": "penguins"}, meta={"k": 1})
        await flow.emit(message)
        await asyncio.wait_for(flow.fetch(), 1)
    finally:
        await flow.stop()
    leases = await store.take(bus_queue("echo"), owner="remote-worker", lease_s=30)
    assert len(leases) == 1
    item: dict[str, Any] = leases[0].payload
    assert item["edge"] == "OpenSea->echo" and item["trace_id"] == message.trace_id
    assert Message.model_validate(item["payload"]).payload == {"q": "penguins"}
    assert item["headers"]["tenant"] == "acme" and item["meta"] == {"k": 1}
    assert len(await store.take(bus_queue("Rookery"), owner="w", lease_s=30)) == 1
