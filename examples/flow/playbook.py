"""A playbook: a controller calls a retrieval -> rerank -> compress subflow as if it were a function.

Run: python examples/flow/playbook.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from podium.flow import Context, Flow, Headers, Message, ModelRegistry, Node, NodePolicy, create

NONE = NodePolicy(validate="none")


async def retrieve(message: Message, _ctx: Any) -> Message:
    docs = [f"{message.payload}-doc-{i}" for i in range(3)]
    return message.model_copy(update={"payload": docs})


async def rerank(message: Message, _ctx: Any) -> Message:
    return message.model_copy(update={"payload": sorted(message.payload, reverse=True)})


async def compress(message: Message, _ctx: Any) -> Message:
    return message.model_copy(update={"payload": f"{message.payload[0]} :: compressed"})


def retrieval_playbook() -> tuple[Flow, ModelRegistry | None]:
    r, k, c = (Node(f, name=f.__name__, policy=NONE) for f in (retrieve, rerank, compress))
    return create(r.to(k), k.to(c)), None


async def controller(message: Message, ctx: Context) -> Message:
    summary = await ctx.call_playbook(retrieval_playbook, message, timeout=5)
    return message.model_copy(update={"payload": summary})


async def run() -> Message:
    flow = create(Node(controller, name="controller", policy=NONE).to())
    async with flow:
        await flow.emit(
            Message(payload="antarctic krill", headers=Headers(tenant="acme"), meta={"req": "r1"})
        )
        result: Message = await flow.fetch()
    return result


def main() -> None:
    result = asyncio.run(run())
    print(result.payload)
    print(f"trace kept: meta={result.meta}")


if __name__ == "__main__":
    main()
