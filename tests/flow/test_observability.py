"""FlowEvents reach every middleware; logging, state store and message bus hooks."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import pytest

from podium.flow import (
    BusEnvelope,
    FlowEvent,
    InMemoryMessageBus,
    InMemoryStateStore,
    Message,
    Node,
    NodePolicy,
    StoredEvent,
    create,
    format_flow_event,
    log_flow_events,
)
from tests.flow.helpers import EventLog, identity, msg

NONE = NodePolicy(validate="none")


def chain(*names: str, **kwargs: Any) -> Any:
    nodes = [Node(identity, name=name, policy=NONE) for name in names]
    return create(*(a.to(b) for a, b in itertools.pairwise(nodes)), nodes[-1].to(), **kwargs)


async def test_middlewares_receive_every_event_with_its_fields(events: EventLog) -> None:
    second = EventLog()
    flow = chain("a", "b", "c", middlewares=[events])
    flow.add_middleware(second)
    flow.run()
    try:
        message = msg("x")
        await flow.emit(message)
        await asyncio.wait_for(flow.fetch(), 1)
    finally:
        await flow.stop()
    mine = [(e.event_type, e.node_name) for e in events.events if e.trace_id == message.trace_id]
    assert mine == [(kind, node) for node in "abc" for kind in ("node_start", "node_success")]
    assert [e.event_type for e in second.events] == [e.event_type for e in events.events]
    success = next(e for e in events.events if e.event_type == "node_success")
    assert success.latency_ms is not None and success.latency_ms >= 0
    assert (success.event, success.q_depth_in, success.q_depth_out) == (
        success.event_type,
        success.queue_depth_in,
        success.queue_depth_out,
    )
    payload = success.to_payload()
    for key in ("ts", "trace_id", "node_name", "event", "latency_ms", "q_depth_in", "q_depth_out", "attempt"):
        assert key in payload
    assert success.extra == {} and success.attempt == 0 and success.trace_pending is not None
    assert "node_cancelled" in [e.event_type for e in events.events]  # worker shutdown


def test_flow_event_extra_is_read_only_and_helpers() -> None:
    event = FlowEvent(
        event_type="node_failed",
        ts=1.0,
        node_name="n",
        node_id="id",
        trace_id="t",
        attempt=1,
        latency_ms=2.5,
        queue_depth_in=1,
        queue_depth_out=2,
        outgoing_edges=1,
        queue_maxsize=64,
        trace_pending=3,
        trace_inflight=1,
        trace_cancelled=False,
        extra={"flow_error": {"code": "NODE_EXCEPTION", "message": "boom"}, "retry": True},
    )
    with pytest.raises(TypeError):
        event.extra["x"] = 1  # type: ignore[index]
    assert event.queue_depth == 3
    assert event.metric_samples()["latency_ms"] == 2.5
    assert event.tag_values()["retry"] == "True"
    flat = format_flow_event(event)
    assert flat["flow_error_code"] == "NODE_EXCEPTION" and flat["flow_error"]["message"] == "boom"


async def test_a_failing_middleware_is_logged_and_the_flow_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(_event: FlowEvent) -> None:
        raise RuntimeError("sink down")

    flow = chain("a", middlewares=[broken])
    flow.run()
    try:
        await flow.emit("x")
        assert await asyncio.wait_for(flow.fetch(), 1) == "x"
    finally:
        await flow.stop()
    assert any(r.message == "middleware_error" and r.name == "podium.flow.core" for r in caplog.records)


async def test_log_flow_events_logs_lifecycle_and_feeds_latencies(caplog: pytest.LogCaptureFixture) -> None:
    latencies: list[tuple[str, float]] = []
    middleware = log_flow_events(latency_callback=lambda kind, ms, _e: latencies.append((kind, ms)))
    flow = chain("a", middlewares=[middleware])
    caplog.set_level(logging.INFO, logger="podium.flow.flow")
    flow.run()
    try:
        await flow.emit(msg("x"))
        await asyncio.wait_for(flow.fetch(), 1)
    finally:
        await flow.stop()
    logged = [r.message for r in caplog.records if r.name == "podium.flow.flow"]
    assert logged == ["node_start", "node_success"]
    assert [kind for kind, _ in latencies] == ["node_success"]


async def test_state_store_keeps_history_by_trace() -> None:
    store = InMemoryStateStore()
    flow = chain("a", "b", state_store=store)
    flow.run()
    try:
        message = msg("x")
        await flow.emit(message)
        await asyncio.wait_for(flow.fetch(), 1)
        history = await flow.load_history(message.trace_id)
    finally:
        await flow.stop()
    assert [e.kind for e in history] == ["node_start", "node_success"] * 2
    assert all(isinstance(e, StoredEvent) and e.trace_id == message.trace_id for e in history)
    assert [e.node_name for e in history] == ["a", "a", "b", "b"]
    with pytest.raises(RuntimeError):
        await chain("a").load_history("t")


async def test_state_store_failures_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    class Failing(InMemoryStateStore):
        async def save_event(self, event: StoredEvent) -> None:
            raise RuntimeError("disk full")

    flow = chain("a", state_store=Failing())
    flow.run()
    try:
        await flow.emit(msg("x"))
        assert (await asyncio.wait_for(flow.fetch(), 1)).payload == "x"
    finally:
        await flow.stop()
    assert any(r.message == "state_store_save_failed" for r in caplog.records)


async def test_message_bus_sees_every_edge_crossing() -> None:
    bus = InMemoryMessageBus()
    flow = chain("a", "b", message_bus=bus)
    flow.run()
    try:
        message = msg("x", meta={"k": 1})
        await flow.emit(message)
        await asyncio.wait_for(flow.fetch(), 1)
        flow.emit_nowait(msg("y"))
        await asyncio.wait_for(flow.fetch(), 1)
    finally:
        await flow.stop()
    edges = [e.edge for e in bus.envelopes if e.trace_id == message.trace_id]
    assert edges == ["OpenSea->a", "a->b", "b->Rookery"]
    first = bus.envelopes[0]
    assert isinstance(first, BusEnvelope) and first.headers == {
        "tenant": "acme",
        "topic": None,
        "priority": 0,
    }
    assert first.meta == {"k": 1} and isinstance(first.payload, Message)
    assert len(bus.envelopes) == 6


async def test_trace_inflight_counts_the_invocations_running_as_penguiflow_does() -> None:
    from podium.flow import Node, NodePolicy, create
    from tests.flow.helpers import EventLog, msg

    # Given a fan-out where "slow" is still running when "fast" starts and finishes
    release = asyncio.Event()

    async def slow(message: Any, _ctx: Any) -> Any:
        await release.wait()
        return message

    async def fast(message: Any, _ctx: Any) -> Any:
        return message

    async def split(message: Any, _ctx: Any) -> Any:
        return message

    log = EventLog()
    none = NodePolicy(validate="none")
    start, a, b = (
        Node(split, name="split", policy=none),
        Node(slow, name="slow", policy=none),
        Node(fast, name="fast", policy=none),
    )
    flow = create(start.to(a, b), middlewares=[log])
    flow.run()
    try:
        await flow.emit(msg("x"))
        first = await asyncio.wait_for(flow.fetch(), 1)
        release.set()
        await asyncio.wait_for(flow.fetch(), 1)
    finally:
        await flow.stop()
    inflight = {
        (e.event_type, e.node_name): e.trace_inflight for e in log.events if e.trace_id == first.trace_id
    }
    # Then an event counts the other invocations of its trace, never its own node before or after the call
    assert inflight[("node_start", "split")] == 0 and inflight[("node_success", "split")] == 0
    assert inflight[("node_start", "fast")] == 1 and inflight[("node_success", "fast")] == 1
    assert inflight[("node_success", "slow")] == 0
