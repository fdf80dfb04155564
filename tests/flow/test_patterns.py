"""Patterns: map_concurrent, routers, routing policies, join_k."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from podium.flow import (
    Context,
    DictRoutingPolicy,
    Message,
    Node,
    NodePolicy,
    RoutingRequest,
    create,
    join_k,
    map_concurrent,
    predicate_router,
    union_router,
)
from tests.flow.helpers import gather_fetch, msg

NONE = NodePolicy(validate="none")


def tagger(tag: str) -> Node:
    async def _tag(message: Any, _ctx: Any) -> str:
        payload = message.payload if isinstance(message, Message) else getattr(message, "value", message)
        return f"{tag}:{payload}"

    return Node(_tag, name=tag, policy=NONE)


async def test_map_concurrent_keeps_order_and_bounds_concurrency() -> None:
    active = peak = 0

    async def square(x: int) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0)
        active -= 1
        return x * x

    before = len(asyncio.all_tasks())
    assert await map_concurrent(range(20), square, max_concurrency=3) == [x * x for x in range(20)]
    assert peak == 3
    assert len(asyncio.all_tasks()) == before
    assert await map_concurrent([], square) == []


async def test_map_concurrent_cancels_the_rest_when_one_fails() -> None:
    cancelled = 0

    async def work(x: int) -> int:
        nonlocal cancelled
        if x == 1:
            raise ValueError("bad item")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return x

    with pytest.raises(ValueError, match="bad item"):
        await map_concurrent(range(4), work, max_concurrency=2)
    assert cancelled == 1


async def test_predicate_router_routes_by_name_or_node_and_drops_on_none() -> None:
    left, right = tagger("left"), tagger("right")

    def pick(message: Message) -> Any:
        return {"L": ["left"], "R": right, "both": ["left", "right"]}.get(message.payload)

    router = predicate_router("router", pick)
    flow = create(router.to(left, right))
    flow.run()
    try:
        await flow.emit(msg("L"))
        assert await asyncio.wait_for(flow.fetch(), 1) == "left:L"
        await flow.emit(msg("nowhere"))  # dropped
        await flow.emit(msg("R"))
        assert await asyncio.wait_for(flow.fetch(), 1) == "right:R"
        await flow.emit(msg("both"))
        assert sorted(await gather_fetch(flow, 2)) == ["left:both", "right:both"]
    finally:
        await flow.stop()


async def test_routing_policy_overrides_the_predicate_at_runtime() -> None:
    left, right = tagger("left"), tagger("right")
    requests: list[RoutingRequest] = []

    def key(request: RoutingRequest) -> str:
        requests.append(request)
        return request.message.headers.tenant

    policy = DictRoutingPolicy({"acme": "right"}, default="left", key_getter=key)
    flow = create(predicate_router("router", lambda m: ["left"], policy=policy).to(left, right))
    flow.run()
    try:
        await flow.emit(msg("a"))
        assert await asyncio.wait_for(flow.fetch(), 1) == "right:a"
        policy.update_mapping({"acme": None})  # None drops
        policy.set_default("left")
        await flow.emit(msg("b"))
        await flow.emit(Message(payload="c", headers={"tenant": "other"}))  # type: ignore[arg-type]
        assert await asyncio.wait_for(flow.fetch(), 1) == "left:c"
    finally:
        await flow.stop()
    assert requests[0].proposed_names == ("left",) and requests[0].node_name == "router"


def test_dict_routing_policy_loaders(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps({"t1": ["a", "b"]}))
    assert DictRoutingPolicy.from_json_file(str(path))._mapping == {"t1": ["a", "b"]}
    monkeypatch.setenv("ROUTES", '{"t2": "c"}')
    policy = DictRoutingPolicy.from_env("ROUTES", default="d")
    request = RoutingRequest(message=None, context=None, node=tagger("x"), proposed=(), trace_id="t2")  # type: ignore[arg-type]
    assert policy.select(request) == "c"
    with pytest.raises(TypeError):
        DictRoutingPolicy.from_json("[1, 2]")
    with pytest.raises(KeyError):
        DictRoutingPolicy.from_env("NOT_SET_ANYWHERE")


class Foo(BaseModel):
    kind: Literal["foo"] = "foo"
    value: int


class Bar(BaseModel):
    kind: Literal["bar"] = "bar"
    value: str


FooOrBar = Annotated[Foo | Bar, Field(discriminator="kind")]


async def test_union_router_sends_each_variant_to_its_node() -> None:
    flow = create(union_router("router", FooOrBar).to(tagger("foo"), tagger("bar")))
    flow.run()
    try:
        await flow.emit(Foo(value=3))
        assert await asyncio.wait_for(flow.fetch(), 1) == "foo:3"
        await flow.emit({"kind": "bar", "value": "hi"})
        assert await asyncio.wait_for(flow.fetch(), 1) == "bar:hi"
    finally:
        await flow.stop()


async def test_join_k_emits_exactly_one_aggregate_per_trace() -> None:
    async def fan(message: Message, _ctx: Any) -> Message:
        return message

    join = join_k("join", 10)
    sink_calls: list[Message] = []

    async def sink(message: Message, _ctx: Any) -> Message:
        sink_calls.append(message)
        return message

    def worker(name: str) -> Node:
        async def _work(message: Message, _ctx: Context) -> Message:
            return message.model_copy(update={"payload": f"{name}:{message.payload}"})

        return Node(_work, name=name, policy=NONE)

    workers = [worker(f"w{i}") for i in range(10)]
    fan_node = Node(fan, name="fan", policy=NONE)
    sink_node = Node(sink, name="sink", policy=NONE)
    flow = create(fan_node.to(*workers), *(w.to(join) for w in workers), join.to(sink_node), sink_node.to())
    flow.run()
    messages = [msg(i) for i in range(20)]
    try:
        for message in messages:
            await flow.emit(message)
        results = await gather_fetch(flow, 20)
        # one more message must produce exactly one more aggregate, not leftovers
        extra = msg("x")
        await flow.emit(extra)
        assert (await asyncio.wait_for(flow.fetch(), 1)).trace_id == extra.trace_id
    finally:
        await flow.stop()
    assert sorted(r.trace_id for r in results) == sorted(m.trace_id for m in messages)
    for result in results:
        index = next(m.payload for m in messages if m.trace_id == result.trace_id)
        assert sorted(result.payload) == sorted(f"w{i}:{index}" for i in range(10))
    assert len(sink_calls) == 21
    assert join.join_state.pending_traces(flow) == 0  # type: ignore[attr-defined]


async def test_join_k_waits_across_separate_emits_of_the_same_trace() -> None:
    join = join_k("join", 2)
    flow = create(join.to())
    flow.run()
    try:
        await flow.emit(msg("one", trace_id="t"))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(flow.fetch(), 0.02)
        await flow.emit(msg("two", trace_id="t"))
        aggregate = await asyncio.wait_for(flow.fetch(), 1)
    finally:
        await flow.stop()
    assert aggregate.payload == ["one", "two"] and aggregate.trace_id == "t"


async def test_join_k_frees_stray_and_late_buckets() -> None:
    join = join_k("join", 3, idle_ttl_s=0.01)
    state = join.join_state  # type: ignore[attr-defined]
    flow = create(join.to())
    flow.run()
    try:
        # stray: only 2 of 3 messages ever come
        await flow.emit(msg("a", trace_id="stray"))
        await flow.emit(msg("b", trace_id="stray"))
        # late: a 4th message after a complete batch
        for payload in "xyz":
            await flow.emit(msg(payload, trace_id="late"))
        assert (await asyncio.wait_for(flow.fetch(), 1)).payload == ["x", "y", "z"]
        await flow.emit(msg("w", trace_id="late"))
        async with asyncio.timeout(1):
            while state.pending_traces(flow) < 2:
                await asyncio.sleep(0)
        async with asyncio.timeout(1):
            while state.pending_traces(flow):
                await asyncio.sleep(0.005)
        assert state.expired == 2
    finally:
        await flow.stop()


async def test_join_k_bounds_open_buckets_and_stop_clears_them() -> None:
    join = join_k("join", 2, idle_ttl_s=None, max_pending=3)
    state = join.join_state  # type: ignore[attr-defined]
    flow = create(join.to())
    flow.run()
    for i in range(5):
        await flow.emit(msg(i, trace_id=f"t{i}"))
    async with asyncio.timeout(1):
        while state.evicted < 2:
            await asyncio.sleep(0)
    assert state.pending_traces(flow) == 3
    await flow.stop()
    assert state.pending_traces() == 0
    with pytest.raises(ValueError):
        join_k("bad", 0)
