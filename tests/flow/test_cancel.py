"""cancel(trace_id): that trace stops everywhere (playbooks included); other traces keep running."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from podium.flow import (
    Context,
    Flow,
    Message,
    Node,
    NodePolicy,
    TraceCancelled,
    call_playbook,
    create,
    join_k,
)
from tests.flow.helpers import EventLog, identity, msg

NONE = NodePolicy(validate="none")


async def test_cancel_stops_one_trace_everywhere_and_leaves_no_task_behind(events: EventLog) -> None:
    # Given a controller that runs a playbook for trace A (stuck in the subflow) and answers others directly
    sub_started, sub_cancelled, release = asyncio.Event(), asyncio.Event(), asyncio.Event()
    subflows: list[Flow] = []

    async def sub_worker(message: Message, _ctx: Any) -> Message:
        sub_started.set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            sub_cancelled.set()
            raise
        return message

    def playbook() -> tuple[Flow, None]:
        subflow = create(Node(sub_worker, name="sub", policy=NONE).to())
        subflows.append(subflow)
        return subflow, None

    async def controller(message: Message, ctx: Context) -> Message:
        if message.payload == "A":
            await ctx.call_playbook(playbook, message)
            for i in range(3):  # never reached for A
                await ctx.emit(message.model_copy(update={"payload": f"A{i}"}))
        return message

    processed: list[str] = []

    async def sink(message: Message, _ctx: Any) -> str:
        processed.append(message.payload)
        return str(message.payload)

    flow = create(
        Node(controller, name="controller", policy=NONE).to(Node(sink, name="sink", policy=NONE)),
        middlewares=[events],
    )
    flow.run()
    baseline = asyncio.all_tasks()
    trace_a, trace_b = msg("A"), msg("B")
    try:
        await flow.emit(trace_a)
        await asyncio.wait_for(sub_started.wait(), 1)
        await flow.emit(trace_b)  # queued behind A at the controller
        sub_tasks = list(subflows[0]._tasks)
        assert len(asyncio.all_tasks()) == len(baseline) + len(sub_tasks)

        # When trace A is cancelled
        assert await flow.cancel(trace_a.trace_id) is True

        # Then A's playbook was cancelled and stopped, and none of A's tasks is left
        assert sub_cancelled.is_set()
        assert all(task.done() for task in sub_tasks) and not subflows[0]._running
        assert asyncio.all_tasks() == baseline
        # and B still runs to the end while nothing of A ever reaches the sink
        assert await asyncio.wait_for(flow.fetch(), 1) == "B"
        finish = await events.wait_for(lambda e: e.event_type == "trace_cancel_finish")
        assert finish.trace_id == trace_a.trace_id and finish.trace_pending == 0
        assert processed == ["B"]
        start = next(e for e in events.events if e.event_type == "trace_cancel_start")
        assert start.trace_cancelled and start.trace_inflight >= 1 and start.extra["pending"] >= 1
        assert await flow.cancel(trace_a.trace_id) is False, "nothing left to cancel"
    finally:
        release.set()
        await flow.stop()


async def test_cancel_drops_queued_messages_of_the_trace_on_every_edge() -> None:
    gate = asyncio.Event()
    seen: list[Any] = []

    async def fan(message: Message, ctx: Context) -> None:
        for i in range(5):
            await ctx.emit(message.model_copy(update={"payload": (message.payload, i)}))

    async def slow(message: Message, _ctx: Any) -> Message:
        await gate.wait()
        seen.append(message.payload)
        return message

    flow = create(
        Node(fan, name="fan", policy=NONE).to(Node(slow, name="slow", policy=NONE)), queue_maxsize=16
    )
    flow.run()
    try:
        a, b = msg("a"), msg("b")
        await flow.emit(a)
        await flow.emit(b)
        async with asyncio.timeout(1):
            while flow._trace_counts.get(b.trace_id, 0) < 5:
                await asyncio.sleep(0)
        assert await flow.cancel(a.trace_id)
        gate.set()
        results = [await asyncio.wait_for(flow.fetch(), 1) for _ in range(5)]
    finally:
        await flow.stop()
    assert [r.payload for r in results] == [("b", i) for i in range(5)]
    assert all(payload[0] == "b" for payload in seen)
    assert a.trace_id not in flow._trace_counts


async def test_cancel_unknown_trace_returns_false_and_cancel_needs_a_running_flow() -> None:
    flow = create(Node(identity, name="n", policy=NONE).to())
    with pytest.raises(RuntimeError, match="not running"):
        await flow.cancel("x")
    flow.run()
    try:
        assert await flow.cancel("missing") is False
    finally:
        await flow.stop()


async def test_call_playbook_outside_a_node_raises_trace_cancelled_when_the_parent_cancels() -> None:
    started = asyncio.Event()

    async def stuck(message: Message, _ctx: Any) -> Message:
        started.set()
        await asyncio.Event().wait()
        return message

    def playbook() -> tuple[Flow, None]:
        return create(Node(stuck, name="stuck", policy=NONE).to()), None

    gate = asyncio.Event()

    async def hold(message: Message, _ctx: Any) -> Message:
        await gate.wait()
        return message

    parent = create(Node(hold, name="hold", policy=NONE).to())
    parent.run()
    try:
        message = msg("work")
        await parent.emit(message)  # the trace is now active in the parent
        call = asyncio.create_task(call_playbook(playbook, message, runtime=parent))
        await asyncio.wait_for(started.wait(), 1)
        assert await parent.cancel(message.trace_id)
        with pytest.raises(TraceCancelled):
            await asyncio.wait_for(call, 1)
        # a trace that is already cancelled does not even start the subflow
        parent._cancelled.add("gone")
        with pytest.raises(TraceCancelled):
            await call_playbook(playbook, msg("late", trace_id="gone"), runtime=parent)
    finally:
        gate.set()
        await parent.stop()


async def test_call_playbook_timeout_and_outer_cancellation_stop_the_subflow() -> None:
    subflows: list[Flow] = []

    async def stuck(message: Message, _ctx: Any) -> Message:
        await asyncio.Event().wait()
        return message

    def playbook() -> tuple[Flow, None]:
        subflows.append(create(Node(stuck, name="stuck", policy=NONE).to()))
        return subflows[-1], None

    with pytest.raises(TimeoutError):
        await call_playbook(playbook, msg("x"), timeout=0.01)
    assert not subflows[-1]._running and not subflows[-1]._tasks

    task = asyncio.create_task(call_playbook(playbook, msg("y")))
    async with asyncio.timeout(1):
        while len(subflows) < 2 or not subflows[-1]._trace_counts:
            await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not subflows[-1]._running and not subflows[-1]._tasks


async def test_cancel_from_inside_the_nodes_own_trace() -> None:
    async def self_cancel(message: Message, ctx: Context) -> Message:
        if message.payload == "quit":
            assert ctx.runtime is not None
            await ctx.runtime.cancel(message.trace_id)
            await asyncio.sleep(0)  # the cancellation lands here
            raise AssertionError("unreachable")
        return message

    flow = create(Node(self_cancel, name="n", policy=NONE).to())
    flow.run()
    try:
        await flow.emit(msg("quit"))
        await flow.emit(msg("next"))
        assert (await asyncio.wait_for(flow.fetch(), 1)).payload == "next"
    finally:
        await flow.stop()


async def test_cancel_frees_the_trace_join_bucket() -> None:
    join = join_k("join", 3)
    feeder_gate = asyncio.Event()

    async def feeder(message: Message, ctx: Context) -> None:
        await ctx.emit(message)
        await feeder_gate.wait()
        await ctx.emit(message)

    flow = create(Node(feeder, name="feeder", policy=NONE).to(join), join.to())
    flow.run()
    try:
        message = msg("x")
        await flow.emit(message)
        state = join.join_state  # type: ignore[attr-defined]
        async with asyncio.timeout(1):
            while state.pending_traces(flow) != 1:
                await asyncio.sleep(0)
        assert await flow.cancel(message.trace_id)
        assert state.pending_traces(flow) == 0
    finally:
        feeder_gate.set()
        await flow.stop()
