"""NodePolicy: retries with backoff, timeouts, an event per attempt, and FlowError when retries run out."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from podium.flow import FlowError, FlowErrorCode, Message, Node, NodePolicy, create
from podium.flow.testkit import simulate_error
from tests.flow.helpers import EventLog, msg


async def test_retries_back_off_per_policy_with_an_event_for_each_attempt(
    events: EventLog, instant_sleep: list[float]
) -> None:
    flaky = simulate_error("flaky", FlowErrorCode.NODE_EXCEPTION, fail_times=3)
    policy = NodePolicy(validate="none", max_retries=4, backoff_base=0.1, backoff_mult=2.0, max_backoff=0.3)
    flow = create(Node(flaky, name="flaky", policy=policy).to(), middlewares=[events])
    flow.run()
    try:
        message = msg("payload")
        await flow.emit(message)
        result = await asyncio.wait_for(flow.fetch(), 1)
    finally:
        await flow.stop()
    assert result is message
    assert instant_sleep == [0.1, 0.2, 0.3], "exponential backoff capped by max_backoff"
    per_attempt = [(e.event_type, e.attempt) for e in events.events if e.trace_id == message.trace_id]
    assert per_attempt == [
        ("node_start", 0), ("node_error", 0), ("node_retry", 1),
        ("node_start", 1), ("node_error", 1), ("node_retry", 2),
        ("node_start", 2), ("node_error", 2), ("node_retry", 3),
        ("node_start", 3), ("node_success", 3),
    ]  # fmt: skip
    retries = [e for e in events.events if e.event_type == "node_retry"]
    assert [e.extra["sleep_s"] for e in retries] == [0.1, 0.2, 0.3]


async def test_exhausted_retries_give_a_flow_error_at_rookery(
    events: EventLog, instant_sleep: list[float]
) -> None:
    boom = ValueError("boom")
    attempts = 0

    async def failing(_message: Message, _ctx: Any) -> None:
        nonlocal attempts
        attempts += 1
        raise boom

    policy = NodePolicy(validate="none", max_retries=2, backoff_base=0.01)
    flow = create(
        Node(failing, name="failing", policy=policy).to(), emit_errors_to_rookery=True, middlewares=[events]
    )
    flow.run()
    try:
        message = msg("x")
        await flow.emit(message)
        error = await asyncio.wait_for(flow.fetch(), 1)
    finally:
        await flow.stop()
    assert isinstance(error, FlowError)
    assert (error.trace_id, error.node_name, error.code) == (message.trace_id, "failing", "NODE_EXCEPTION")
    assert error.unwrap() is boom and error.exception_type == "ValueError"
    assert error.metadata["attempt"] == 2 and attempts == 3
    assert error.to_payload()["code"] == FlowErrorCode.NODE_EXCEPTION.value
    failed = [e for e in events.events if e.event_type == "node_failed"]
    assert len(failed) == 1 and failed[0].error_payload is not None
    assert failed[0].error_payload["code"] == "NODE_EXCEPTION"


async def test_without_emit_errors_to_rookery_a_failure_delivers_nothing(events: EventLog) -> None:
    async def maybe_fail(message: Message, _ctx: Any) -> Message:
        if message.payload == "bad":
            raise RuntimeError("nope")
        return message

    flow = create(Node(maybe_fail, name="n", policy=NodePolicy(validate="none")).to(), middlewares=[events])
    flow.run()
    try:
        await flow.emit(msg("bad"))
        await flow.emit(msg("good"))
        first = await asyncio.wait_for(flow.fetch(), 1)
        assert first.payload == "good"
        assert "node_failed" in events.kinds()
    finally:
        await flow.stop()


async def test_timeouts_cancel_the_attempt_retry_and_end_in_node_timeout(events: EventLog) -> None:
    cancelled = 0

    async def stuck(_message: Message, _ctx: Any) -> None:
        nonlocal cancelled
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled += 1
            raise

    policy = NodePolicy(validate="none", timeout_s=0.02, max_retries=1, backoff_base=0.0)
    flow = create(
        Node(stuck, name="stuck", policy=policy).to(), emit_errors_to_rookery=True, middlewares=[events]
    )
    flow.run()
    try:
        message = msg("x")
        await flow.emit(message)
        error = await asyncio.wait_for(flow.fetch(), 2)
    finally:
        await flow.stop()
    assert isinstance(error, FlowError) and error.code == "NODE_TIMEOUT"
    assert error.metadata["timeout_s"] == pytest.approx(0.02)
    assert error.metadata["attempt"] == 1
    assert cancelled == 2
    assert events.kinds(message.trace_id).count("node_timeout") == 2


async def test_a_fast_node_with_a_timeout_is_not_affected() -> None:
    async def quick(message: Message, _ctx: Any) -> Message:
        await asyncio.sleep(0)
        return message

    flow = create(Node(quick, name="quick", policy=NodePolicy(validate="none", timeout_s=5)).to())
    flow.run()
    try:
        for i in range(20):
            await flow.emit(msg(i))
        assert [(await flow.fetch()).payload for _ in range(20)] == list(range(20))
    finally:
        await flow.stop()


async def test_retry_events_are_logged_on_podium_flow_core(
    caplog: pytest.LogCaptureFixture, instant_sleep: list[float]
) -> None:
    flaky = simulate_error("flaky", "BOOM", fail_times=1)
    flow = create(Node(flaky, name="flaky", policy=NodePolicy(validate="none", max_retries=1)).to())
    caplog.set_level(logging.INFO, logger="podium.flow.core")
    flow.run()
    try:
        await flow.emit(msg("x"))
        await asyncio.wait_for(flow.fetch(), 1)
    finally:
        await flow.stop()
    records = [r for r in caplog.records if r.name == "podium.flow.core"]
    assert [getattr(r, "event", None) for r in records if r.message == "node_retry"] == ["node_retry"]
    error_records = [r for r in records if r.message == "node_error"]
    assert error_records and error_records[0].exc_info is not None
    assert flaky.simulation.attempts == 2  # type: ignore[attr-defined]
