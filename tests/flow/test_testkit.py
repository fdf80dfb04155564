"""The test kit: run_one, assert_node_sequence, simulate_error and friends."""

from __future__ import annotations

from typing import Any

import pytest

from podium.flow import FlowErrorCode, Message, Node, NodePolicy, create, testkit
from tests.flow.helpers import identity, msg

NONE = NodePolicy(validate="none")


async def test_run_one_returns_the_result_and_records_the_node_sequence() -> None:
    async def upper(message: Message, _ctx: Any) -> Message:
        return message.model_copy(update={"payload": message.payload.upper()})

    a, b = Node(identity, name="a", policy=NONE), Node(upper, name="b", policy=NONE)
    flow = create(a.to(b), b.to())
    message = msg("hello")
    result = await testkit.run_one(flow, message)
    assert result.payload == "HELLO"
    testkit.assert_node_sequence(message.trace_id, ["a", "b"])
    with pytest.raises(AssertionError, match="Node sequence mismatch"):
        testkit.assert_node_sequence(message.trace_id, ["b", "a"])
    with pytest.raises(AssertionError, match="No recorded events"):
        testkit.assert_node_sequence("unknown", ["a"])
    kinds = [e.event_type for e in testkit.get_recorded_events(message.trace_id)]
    assert kinds[:2] == ["node_start", "node_success"]
    assert not flow._running


async def test_simulate_error_drives_retries() -> None:
    flaky = testkit.simulate_error("flaky", FlowErrorCode.NODE_EXCEPTION, fail_times=2, result="ok")
    node = Node(flaky, name="flaky", policy=NodePolicy(validate="none", max_retries=2, backoff_base=0.001))
    message = msg("x")
    assert await testkit.run_one(create(node.to()), message) == "ok"
    assert flaky.simulation.attempts == 3 and flaky.simulation.failures == 2  # type: ignore[attr-defined]
    testkit.assert_node_sequence(message.trace_id, ["flaky"])  # retries of one node count once
    errors = [e for e in testkit.get_recorded_events(message.trace_id) if e.event_type == "node_error"]
    assert "[NODE_EXCEPTION] simulated failure in flaky (attempt 1)" in errors[0].extra["exception"]
    with pytest.raises(ValueError):
        testkit.simulate_error("n", "X", fail_times=0)


async def test_run_one_times_out_when_nothing_arrives_and_rejects_bare_payloads() -> None:
    async def swallow(_message: Message, _ctx: Any) -> None:
        return None

    with pytest.raises(TimeoutError):
        await testkit.run_one(create(Node(swallow, name="s", policy=NONE).to()), msg("x"), timeout_s=0.01)
    with pytest.raises(TypeError):
        await testkit.run_one(create(Node(identity, name="i", policy=NONE).to()), "bare")  # type: ignore[arg-type]


async def test_assert_preserves_message_envelope() -> None:
    async def good(message: Message, _ctx: Any) -> Message:
        return message.model_copy(update={"payload": 1})

    async def bad(message: Message, _ctx: Any) -> Message:
        return msg(message.payload)

    assert (await testkit.assert_preserves_message_envelope(good)).payload == 1
    with pytest.raises(AssertionError, match="trace_id"):
        await testkit.assert_preserves_message_envelope(Node(bad, name="bad"))
