"""Fan-out / join: one message goes to three workers in parallel, join_k(3) rejoins the results.

Run: python examples/flow/fanout_join.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from podium.flow import Headers, Message, Node, NodePolicy, create, join_k, map_concurrent

NONE = NodePolicy(validate="none")


def worker(source: str) -> Node:
    async def search(message: Message, _ctx: Any) -> Message:
        await asyncio.sleep(0.01)  # pretend to call a search backend
        return message.model_copy(update={"payload": f"{source}:{message.payload}"})

    return Node(search, name=source, policy=NONE)


async def fan(message: Message, _ctx: Any) -> Message:
    return message


async def summarize(batch: Message, _ctx: Any) -> str:
    return " | ".join(sorted(batch.payload))


async def run() -> list[str]:
    workers = [worker(name) for name in ("web", "wiki", "papers")]
    join = join_k("join", len(workers))
    summary = Node(summarize, name="summarize", policy=NONE)
    flow = create(
        Node(fan, name="fan", policy=NONE).to(*workers),
        *(w.to(join) for w in workers),
        join.to(summary),
    )
    results: list[str] = []
    async with flow:
        for query in ("penguins", "krill"):
            await flow.emit(Message(payload=query, headers=Headers(tenant="acme")))
        results = sorted([await flow.fetch(), await flow.fetch()])

    # inside a single node, map_concurrent bounds in-memory fan-out
    async def enrich(doc: str) -> str:
        await asyncio.sleep(0)
        return doc.upper()

    results.append(",".join(await map_concurrent(["a", "b", "c"], enrich, max_concurrency=2)))
    return results


def main() -> None:
    for line in asyncio.run(run()):
        print(line)


if __name__ == "__main__":
    main()
