"""Streaming to SSE: a mock LLM emits tokens with ctx.emit_chunk; the sink renders Server-Sent Events.

Run: python examples/flow/streaming_sse.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from podium.flow import Context, Headers, Message, Node, NodePolicy, StreamChunk, create, format_sse_event

NONE = NodePolicy(validate="none")


async def mock_llm(message: Message, ctx: Context) -> None:
    tokens = f"Penguins huddle to stay warm, said the model about {message.payload}.".split()
    for index, token in enumerate(tokens):
        await ctx.emit_chunk(parent=message, text=token, done=index == len(tokens) - 1, meta={"i": index})


async def to_sse(message: Message, _ctx: Any) -> str:
    chunk = message.payload
    assert isinstance(chunk, StreamChunk)
    return format_sse_event(chunk)


async def run() -> str:
    sink = Node(to_sse, name="sse", policy=NONE)
    flow = create(Node(mock_llm, name="llm", policy=NONE).to(sink), queue_maxsize=4)
    body: list[str] = []
    async with flow:
        await flow.emit(Message(payload="krill", headers=Headers(tenant="acme")))
        while True:
            frame = await flow.fetch()
            body.append(frame)
            if frame.startswith("event: done"):
                break
    return "".join(body)


def main() -> None:
    print(asyncio.run(run()), end="")


if __name__ == "__main__":
    main()
