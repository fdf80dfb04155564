"""Streaming: per-stream sequence numbers without gaps or duplicates, SSE/WebSocket renderings."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from podium.flow import (
    Context,
    Message,
    Node,
    NodePolicy,
    StreamChunk,
    chunk_to_ws_json,
    create,
    emit_stream_events,
    format_sse_event,
    stream_flow,
)
from tests.flow.helpers import msg

NONE = NodePolicy(validate="none")


async def test_interleaved_streams_have_no_gaps_no_duplicates_and_restart_after_done() -> None:
    async def producer(message: Message, ctx: Context) -> None:
        words = message.payload.split()
        for index, word in enumerate(words):
            await ctx.emit_chunk(parent=message, text=word, done=index == len(words) - 1)

    seqs: dict[str, list[int]] = defaultdict(list)

    async def sink(message: Message, _ctx: Any) -> Message:
        seqs[message.payload.stream_id].append(message.payload.seq)
        return message

    # two producers feeding one sink, so chunks of different streams interleave on the sink's inbox
    p1, p2 = Node(producer, name="p1", policy=NONE), Node(producer, name="p2", policy=NONE)
    s = Node(sink, name="sink", policy=NONE)
    flow = create(p1.to(s), p2.to(s), queue_maxsize=2)
    flow.run()
    words = " ".join(f"w{i}" for i in range(30))
    first, second = msg(words), msg(words)
    try:
        await flow.emit(first, to=p1)
        await flow.emit(second, to=p2)
        chunks = [(await asyncio.wait_for(flow.fetch(), 2)).payload for _ in range(60)]
        # the same stream id again starts over at 0
        await flow.emit(msg("again and done", trace_id=first.trace_id), to=p1)
        again = [(await asyncio.wait_for(flow.fetch(), 2)).payload.seq for _ in range(3)]
    finally:
        await flow.stop()
    assert {c.stream_id for c in chunks} == {first.trace_id, second.trace_id}
    for stream in (first.trace_id, second.trace_id):
        assert [c.seq for c in chunks if c.stream_id == stream] == list(range(30))
        assert [c.done for c in chunks if c.stream_id == stream] == [False] * 29 + [True]
    assert seqs[second.trace_id] == list(range(30))
    assert again == [0, 1, 2]


async def test_chunks_inherit_the_parent_envelope() -> None:
    async def producer(message: Message, ctx: Context) -> None:
        chunk = await ctx.emit_chunk(parent=message, text="t", stream_id="s1", meta={"token": 1}, done=True)
        assert chunk.stream_id == "s1"

    flow = create(Node(producer, name="p", policy=NONE).to())
    flow.run()
    parent = msg("seed", meta={"request_id": "abc"}, deadline_s=9e9)
    try:
        await flow.emit(parent)
        out = await asyncio.wait_for(flow.fetch(), 1)
    finally:
        await flow.stop()
    assert (out.trace_id, out.headers, out.deadline_s, out.meta) == (
        parent.trace_id,
        parent.headers,
        9e9,
        {"request_id": "abc"},
    )
    assert out.payload == StreamChunk(stream_id="s1", seq=0, text="t", done=True, meta={"token": 1})


async def test_flow_emit_chunk_from_outside_waits_on_a_full_trace_and_drops_nothing() -> None:
    async def sink(message: Message, _ctx: Any) -> Message:
        return message

    flow = create(Node(sink, name="sink", policy=NONE).to(), queue_maxsize=1)
    flow.run()
    parent = msg("p")
    try:
        await flow.emit_chunk(parent=parent, text="a")
        await flow.emit_chunk(parent=parent, text="b")
        third = asyncio.create_task(flow.emit_chunk(parent=parent, text="c", done=True))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not third.done(), "the stream waits while its earlier chunks are not consumed"
        got = [(await asyncio.wait_for(flow.fetch(), 1)).payload for _ in range(3)]
        chunk = await asyncio.wait_for(third, 1)
    finally:
        await flow.stop()
    assert [(c.text, c.seq, c.done) for c in got] == [("a", 0, False), ("b", 1, False), ("c", 2, True)]
    assert chunk == got[2]


def test_format_sse_event_and_chunk_to_ws_json() -> None:
    chunk = StreamChunk(stream_id="abc", seq=2, text="two\nlines", done=True, meta={"foo": "bar"})
    sse = format_sse_event(chunk, retry_ms=1500)
    assert sse == 'event: done\nid: 2\ndata: two\ndata: lines\ndata: {"foo": "bar"}\nretry: 1500\n\n'
    plain = StreamChunk(stream_id="abc", seq=0, text="hi")
    assert format_sse_event(plain) == "event: chunk\nid: 0\ndata: hi\n\n"
    assert format_sse_event(plain, event_name="token").startswith("event: token\n")
    payload = json.loads(chunk_to_ws_json(chunk, extra={"channel": "chat"}))
    assert payload == {
        "stream_id": "abc",
        "seq": 2,
        "text": "two\nlines",
        "done": True,
        "meta": {"foo": "bar"},
        "channel": "chat",
    }


async def test_stream_flow_and_emit_stream_events() -> None:
    async def source() -> AsyncIterator[dict[str, Any]]:
        for token in ["alpha", "beta"]:
            yield {"text": token, "meta": {"t": token}}

    async def producer(message: Message, ctx: Context) -> None:
        await emit_stream_events(source(), ctx, message, adapter=lambda e: (e["text"], False, e["meta"]))
        await ctx.emit(message.model_copy(update={"payload": "final"}))

    flow = create(Node(producer, name="producer", policy=NONE).to())
    flow.run()
    try:
        items = [item async for item in stream_flow(flow, msg("go"), include_final=True, timeout=1)]
    finally:
        await flow.stop()
    chunks = [i for i in items if isinstance(i, StreamChunk)]
    assert [(c.text, c.seq, c.done) for c in chunks] == [
        ("alpha", 0, False),
        ("beta", 1, False),
        ("", 2, True),
    ]
    assert items[-1] == "final"


async def test_one_stream_fed_by_several_nodes_and_the_outside_counts_once_without_gaps() -> None:
    # Given two nodes that both write into the stream "shared" while the caller writes into it too
    async def writer(message: Message, ctx: Context) -> Message | None:
        if isinstance(message.payload, StreamChunk):
            return message  # a chunk the caller sent: passed on as it is
        for index in range(5):
            await ctx.emit_chunk(parent=message, text=f"{ctx.owner.name}{index}", stream_id="shared")  # type: ignore[union-attr]
        return None

    a, b = Node(writer, name="a", policy=NONE), Node(writer, name="b", policy=NONE)
    flow = create(a.to(), b.to(), queue_maxsize=2)  # small edges: writers wait on backpressure meanwhile
    flow.run()
    try:
        parent = msg("go")
        await flow.emit(parent)

        async def outside() -> None:
            for index in range(5):
                await flow.emit_chunk(parent=parent, text=f"out{index}", stream_id="shared", to=a)

        sender = asyncio.create_task(outside())
        chunks = [(await asyncio.wait_for(flow.fetch(), 1)).payload for _ in range(15)]
        await sender
    finally:
        await flow.stop()
    # Then the 15 chunks carry 0..14 between them, each number once
    assert sorted(chunk.seq for chunk in chunks) == list(range(15))
    assert {chunk.text[:-1] for chunk in chunks} == {"a", "b", "out"}
