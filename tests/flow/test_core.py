"""The runtime: wiring, ordering, backpressure, validation, lifecycle."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from typing import Any

import pytest
from pydantic import BaseModel

from podium.flow import (
    Context,
    CycleError,
    Message,
    ModelRegistry,
    Node,
    NodePolicy,
    PenguiFlow,
    create,
)
from tests.flow.helpers import gather_fetch, identity, msg, wait_until

NONE = NodePolicy(validate="none")


def node(func: Any, name: str, **kwargs: Any) -> Node:
    return Node(func, name=name, policy=kwargs.pop("policy", NONE), **kwargs)


async def test_pass_through_and_implicit_ingress_egress() -> None:
    async def shout(text: str, _ctx: Any) -> str:
        return text.upper()

    flow = create(node(shout, "shout").to())
    assert isinstance(flow, PenguiFlow)
    flow.run()
    try:
        await flow.emit("penguin")
        assert await asyncio.wait_for(flow.fetch(), 1) == "PENGUIN"
    finally:
        await flow.stop()


async def test_fan_out_delivers_to_every_successor() -> None:
    async def left(text: str, _ctx: Any) -> str:
        return f"left:{text}"

    async def right(text: str, _ctx: Any) -> str:
        return f"right:{text}"

    fan = node(identity, "fan")
    flow = create(fan.to(node(left, "left"), node(right, "right")))
    flow.run()
    try:
        await flow.emit("hop")
        assert set(await gather_fetch(flow, 2)) == {"left:hop", "right:hop"}
    finally:
        await flow.stop()


async def test_per_trace_order_is_fifo_along_every_edge() -> None:
    """Interleave 40 traces x 25 messages through a diamond; each trace's order survives every edge."""
    rng = random.Random(7)

    async def jitter(message: Message, _ctx: Any) -> Message:
        for _ in range(rng.randrange(3)):
            await asyncio.sleep(0)
        return message

    async def tag_b(message: Message, _ctx: Any) -> Message:
        return message.model_copy(update={"payload": (*message.payload, "b")})

    async def tag_c(message: Message, _ctx: Any) -> Message:
        return message.model_copy(update={"payload": (*message.payload, "c")})

    a, b, c, d = node(jitter, "a"), node(tag_b, "b"), node(tag_c, "c"), node(jitter, "d")
    flow = create(a.to(b, c), b.to(d), c.to(d), queue_maxsize=4)
    flow.run()
    traces = [msg(None).trace_id for _ in range(40)]

    async def produce() -> None:
        for seq in range(25):
            for trace in traces:
                await flow.emit(msg((trace, seq), trace_id=trace))

    producer = asyncio.create_task(produce())
    try:
        results = await gather_fetch(flow, 40 * 25 * 2, timeout_s=10)
        await producer
    finally:
        await flow.stop()
    seen: dict[tuple[str, str], list[int]] = defaultdict(list)
    for result in results:
        trace, seq, branch = result.payload
        assert result.trace_id == trace
        seen[(trace, branch)].append(seq)
    assert len(seen) == 80
    assert all(seqs == list(range(25)) for seqs in seen.values())


async def test_full_edge_makes_emit_wait_and_nothing_is_dropped() -> None:
    release = asyncio.Event()
    processed: list[str] = []

    async def slow(text: str, _ctx: Any) -> str:
        processed.append(text)
        await release.wait()
        return text

    flow = create(node(slow, "slow").to(), queue_maxsize=2)
    flow.run()
    ingress = flow.floes[0]
    try:
        await flow.emit("m0")
        await wait_until(lambda: processed == ["m0"])  # m0 is running, its edge is empty again
        await flow.emit("m1")
        await flow.emit("m2")
        assert ingress.queue.qsize() == 2 and ingress.queue.full()
        blocked = asyncio.create_task(flow.emit("m3"))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not blocked.done(), "emit on a full edge must wait"
        with pytest.raises(asyncio.QueueFull):
            flow.emit_nowait("m4")
        release.set()
        await asyncio.wait_for(blocked, 1)
        assert sorted(await gather_fetch(flow, 4)) == ["m0", "m1", "m2", "m3"]
        assert processed == ["m0", "m1", "m2", "m3"]
    finally:
        await flow.stop()


async def test_internal_edge_backpressure_bounds_the_consumer_queue() -> None:
    depths: list[int] = []
    done = asyncio.Event()

    async def producer(count: int, ctx: Context) -> None:
        for i in range(count):
            await ctx.emit(i)

    async def consumer(value: int, ctx: Context) -> int:
        depths.append(ctx.queue_depth_in())
        await asyncio.sleep(0)
        if value == 49:
            done.set()
        return value

    prod, cons = node(producer, "producer"), node(consumer, "consumer")
    flow = create(prod.to(cons), cons.to(), queue_maxsize=1)
    flow.run()
    try:
        await flow.emit(50)
        fetched = await gather_fetch(flow, 50)
        assert fetched == list(range(50))
        assert max(depths) <= 1
    finally:
        await flow.stop()


async def test_messages_from_several_edges_are_merged_in_arrival_order() -> None:
    async def to_a(value: int, ctx: Context) -> None:
        await ctx.emit(value, to=a)

    async def to_b(value: int, ctx: Context) -> None:
        await ctx.emit(value, to=b)

    seen: list[tuple[str, int]] = []

    async def sink(value: Any, _ctx: Any) -> Any:
        seen.append(value)
        return value

    router_a, router_b = node(to_a, "ra"), node(to_b, "rb")
    a = node(lambda_tag("a"), "a")
    b = node(lambda_tag("b"), "b")
    s = node(sink, "sink")
    flow = create(router_a.to(a), router_b.to(b), a.to(s), b.to(s))
    flow.run()
    try:
        for i in range(5):
            await flow.emit(i, to=router_a if i % 2 else router_b)
        results = await gather_fetch(flow, 5)
    finally:
        await flow.stop()
    assert sorted(v for _, v in results) == list(range(5))
    assert seen == results


def lambda_tag(tag: str) -> Any:
    async def _tag(value: int, _ctx: Any) -> tuple[str, int]:
        return (tag, value)

    return _tag


async def test_ctx_fetch_from_a_named_predecessor_and_unknown_targets() -> None:
    async def probe(_value: Any, ctx: Context) -> str:
        stranger = Node(identity, name="stranger")
        with pytest.raises(KeyError):
            await ctx.emit("x", to=stranger)
        with pytest.raises(KeyError):
            await ctx.fetch(from_=stranger)
        return "ok"

    flow = create(node(probe, "probe").to())
    flow.run()
    try:
        await flow.emit("go")
        assert await asyncio.wait_for(flow.fetch(), 1) == "ok"
        # Rookery can be read per predecessor too
        await flow.emit("again")
        assert await asyncio.wait_for(flow.fetch(from_=flow.nodes[0]), 1) == "ok"
        with pytest.raises(asyncio.QueueEmpty):
            flow._rookery.fetch_nowait()
    finally:
        await flow.stop()


class Query(BaseModel):
    text: str


class Answer(BaseModel):
    text: str
    length: int


async def answer(query: Query, _ctx: Any) -> dict[str, Any]:
    return {"text": query.text, "length": len(query.text)}


async def test_registry_validates_in_and_out_with_cached_adapters() -> None:
    registry = ModelRegistry()
    registry.register("answer", Query, Answer)
    registry.register("other", Query, Answer)
    assert registry.adapters("answer")[0] is registry.adapters("other")[0], "one TypeAdapter per model"
    flow = create(Node(answer, name="answer", policy=NodePolicy(validate="both")).to())
    flow.run(registry=registry)
    try:
        await flow.emit({"text": "penguin"})
        result = await asyncio.wait_for(flow.fetch(), 1)
    finally:
        await flow.stop()
    assert result == Answer(text="penguin", length=7)


async def test_validate_none_skips_pydantic_entirely() -> None:
    seen: list[Any] = []

    async def raw(value: Any, _ctx: Any) -> Any:
        seen.append(value)
        return {"not": "an Answer"}

    registry = ModelRegistry()
    registry.register("raw", Query, Answer)
    flow = create(Node(raw, name="raw", policy=NodePolicy(validate="none")).to())
    flow.run(registry=registry)
    try:
        await flow.emit({"text": "x"})
        assert await asyncio.wait_for(flow.fetch(), 1) == {"not": "an Answer"}
    finally:
        await flow.stop()
    assert seen == [{"text": "x"}], "input was not converted to Query"


async def test_run_fails_fast_when_a_validating_node_is_not_registered() -> None:
    checked = Node(answer, name="checked")  # validate="both" by default
    unchecked = Node(identity, name="unchecked", policy=NONE)
    flow = create(checked.to(unchecked))
    with pytest.raises(RuntimeError, match=r"missing entries.*: checked$"):
        flow.run(registry=ModelRegistry())
    assert not flow._tasks, "nothing started"
    registry = ModelRegistry()
    registry.register("checked", Query, Answer)
    flow.run(registry=registry)
    await flow.stop()


async def test_message_registered_node_returning_a_bare_payload_warns() -> None:
    registry = ModelRegistry()
    registry.register("annotate", Message, Message)

    async def bad(message: Message, _ctx: Any) -> str:
        return f"{message.payload}!"

    flow = create(Node(bad, name="annotate", policy=NONE).to())
    flow.run(registry=registry)
    try:
        with pytest.warns(RuntimeWarning, match="Message -> Message"):
            await flow.emit(msg("hello"))
            assert await asyncio.wait_for(flow.fetch(), 1) == "hello!"
    finally:
        await flow.stop()


def test_graph_checks() -> None:
    a, b = node(identity, "a"), node(identity, "b")
    with pytest.raises(CycleError):
        create(a.to(b), b.to(a))
    create(a.to(b), b.to(a), allow_cycles=True)
    loop = node(identity, "loop", allow_cycle=True)
    flow = create(loop.to(loop))
    labels = [(f.source.name, f.target.name) for f in flow.floes]  # type: ignore[union-attr]
    assert labels == [("loop", "loop"), ("OpenSea", "loop"), ("loop", "Rookery")]

    with pytest.raises(TypeError, match="async def"):
        Node(lambda m, c: m, name="sync")  # type: ignore[arg-type, return-value]

    async def one(_m: Any) -> None: ...

    with pytest.raises(ValueError, match="exactly two parameters"):
        Node(one)
    with pytest.raises(ValueError, match="validate must be one of"):
        NodePolicy(validate="sometimes")
    with pytest.raises(ValueError):
        NodePolicy(max_retries=-1)


async def test_lifecycle_run_twice_stop_idempotent_and_context_manager() -> None:
    flow = create(node(identity, "echo").to())
    flow.run()
    with pytest.raises(RuntimeError, match="already running"):
        flow.run()
    await flow.stop()
    await flow.stop()
    assert not flow._tasks
    async with create(node(identity, "echo").to()) as running:
        await running.emit("x")
        assert await asyncio.wait_for(running.fetch(), 1) == "x"
        workers = list(running._tasks)
    assert all(task.done() for task in workers)


async def test_stop_cancels_a_running_node() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def blocker(_value: Any, _ctx: Any) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    flow = create(node(blocker, "blocker").to())
    flow.run()
    await flow.emit("x")
    await asyncio.wait_for(started.wait(), 1)
    await flow.stop()
    assert cancelled.is_set()


async def test_a_node_raising_cancelled_error_itself_does_not_kill_its_worker(events: Any) -> None:
    async def weird(message: Message, _ctx: Any) -> Message:
        if message.payload == "bad":
            raise asyncio.CancelledError
        return message

    flow = create(node(weird, "weird").to(), middlewares=[events])
    flow.run()
    try:
        bad = msg("bad")
        await flow.emit(bad)
        await flow.emit(msg("good"))
        result = await asyncio.wait_for(flow.fetch(), 1)
        assert result.payload == "good"
        assert "node_trace_cancelled" in events.kinds(bad.trace_id)
    finally:
        await flow.stop()


async def test_ctx_emit_nowait_sends_without_waiting_and_raises_when_full() -> None:
    outcomes: list[str] = []

    async def burst(message: Message, ctx: Context) -> None:
        for i in range(3):
            try:
                ctx.emit_nowait(message.model_copy(update={"payload": i}))
                outcomes.append("sent")
            except asyncio.QueueFull:
                outcomes.append("full")

    sink = node(identity, "sink")
    flow = create(node(burst, "burst").to(sink), sink.to(), queue_maxsize=2)
    flow.run()
    try:
        await flow.emit(msg("go"))
        results = await gather_fetch(flow, 2)
    finally:
        await flow.stop()
    assert outcomes == ["sent", "sent", "full"]
    assert [r.payload for r in results] == [0, 1]
