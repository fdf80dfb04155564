"""Controller loops: hop and token budgets and deadlines end the loop with a FinalAnswer saying why."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from podium.flow import WM, FinalAnswer, Message, Node, NodePolicy, PlanStep, Thought, _clock, create
from tests.flow.helpers import msg

NONE = NodePolicy(validate="none")


def controller_flow(func: Any) -> Any:
    controller = Node(func, name="controller", allow_cycle=True, policy=NONE)
    return create(controller.to(controller))


async def run_loop(func: Any, message: Message) -> Message:
    flow = controller_flow(func)
    flow.run()
    try:
        await flow.emit(message)
        result = await asyncio.wait_for(flow.fetch(), 2)
    finally:
        await flow.stop()
    assert isinstance(result, Message)
    return result


async def test_hop_budget_ends_the_loop_with_a_final_answer() -> None:
    hops_seen: list[int] = []

    async def think(message: Message, _ctx: Any) -> Message:
        hops_seen.append(message.payload.hops)
        return message  # the runtime counts the hop

    result = await run_loop(think, msg(WM(query="q", budget_hops=3)))
    assert result.payload == FinalAnswer(text="Hop budget exhausted")
    assert hops_seen == [0, 1, 2]


async def test_token_budget_ends_the_loop_with_a_final_answer() -> None:
    async def spend(message: Message, _ctx: Any) -> Message:
        wm = message.payload
        return message.model_copy(
            update={"payload": wm.model_copy(update={"tokens_used": wm.tokens_used + 5})}
        )

    result = await run_loop(spend, msg(WM(query="q", budget_hops=None, budget_tokens=12)))
    assert result.payload == FinalAnswer(text="Token budget exhausted")


@pytest.fixture
def fake_wall() -> Iterator[list[float]]:
    now = [1_000.0]
    _clock.set_clock(wall=lambda: now[0])
    try:
        yield now
    finally:
        _clock.reset_clock()


async def test_deadline_expiring_mid_loop_ends_it_with_a_final_answer(fake_wall: list[float]) -> None:
    calls = 0

    async def slow_thinker(message: Message, _ctx: Any) -> Message:
        nonlocal calls
        calls += 1
        fake_wall[0] += 1.0  # each hop "takes" a second
        return message

    start = fake_wall[0]
    result = await run_loop(slow_thinker, msg(WM(query="q", budget_hops=100), deadline_s=start + 2.5))
    assert result.payload == FinalAnswer(text="Deadline exceeded")
    assert calls == 3


async def test_an_expired_message_never_runs_the_node(fake_wall: list[float]) -> None:
    calls = 0

    async def worker(message: Message, _ctx: Any) -> Message:
        nonlocal calls
        calls += 1
        return message

    downstream = Node(worker, name="downstream", policy=NONE)
    flow = create(Node(worker, name="ingress", policy=NONE).to(downstream), downstream.to())
    flow.run()
    try:
        await flow.emit(msg(WM(query="q"), deadline_s=fake_wall[0] - 1))
        result = await asyncio.wait_for(flow.fetch(), 1)
    finally:
        await flow.stop()
    assert result.payload == FinalAnswer(text="Deadline exceeded") and calls == 0


async def test_a_final_answer_goes_to_rookery_once_and_the_node_runs_once() -> None:
    # PenguiFlow 2.2.5 re-runs the node forever after it returns a FinalAnswer; podium does not.
    calls = 0

    async def answer(message: Message, _ctx: Any) -> Message:
        nonlocal calls
        calls += 1
        return message.model_copy(update={"payload": FinalAnswer(text="42", citations=["hhgttg"])})

    flow = create(Node(answer, name="answer", policy=NONE).to())
    flow.run()
    try:
        await flow.emit(msg(WM(query="q")))
        await flow.emit(msg("sentinel"))
        first = await asyncio.wait_for(flow.fetch(), 1)
        second = await asyncio.wait_for(flow.fetch(), 1)
    finally:
        await flow.stop()
    assert first.payload == FinalAnswer(text="42", citations=["hhgttg"])
    assert second.payload.text == "42" and second.trace_id != first.trace_id
    assert calls == 2


async def test_unbudgeted_loops_stream_each_working_memory_to_rookery() -> None:
    async def step(message: Message, _ctx: Any) -> Message:
        return message

    flow = controller_flow(step)
    flow.run()
    try:
        await flow.emit(msg(WM(query="q", budget_hops=None)))
        hops = [(await asyncio.wait_for(flow.fetch(), 1)).payload.hops for _ in range(3)]
    finally:
        await flow.stop()
    assert hops == [1, 2, 3]


def test_plan_models() -> None:
    thought = Thought(steps=[PlanStep(kind="retrieve", args={"q": "x"})], rationale="look it up")
    assert thought.steps[0].max_concurrency == 1 and not thought.done
    with pytest.raises(ValueError):
        PlanStep(kind="teleport")  # type: ignore[arg-type]
    assert WM(query="q").budget_hops == 8
