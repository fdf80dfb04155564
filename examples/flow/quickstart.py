"""Quickstart: a typed three-node pipeline, validated by a ModelRegistry.

Run: python examples/flow/quickstart.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from podium.flow import ModelRegistry, Node, NodePolicy, create


class TriageIn(BaseModel):
    text: str


class TriageOut(BaseModel):
    text: str
    topic: str


class RetrieveOut(BaseModel):
    topic: str
    docs: list[str]


class PackOut(BaseModel):
    prompt: str


async def triage(msg: TriageIn, _ctx: Any) -> TriageOut:
    return TriageOut(text=msg.text, topic="metrics" if "metric" in msg.text else "general")


async def retrieve(msg: TriageOut, _ctx: Any) -> RetrieveOut:
    return RetrieveOut(topic=msg.topic, docs=[f"doc_{i}_{msg.topic}" for i in range(2)])


async def pack(msg: RetrieveOut, _ctx: Any) -> PackOut:
    return PackOut(prompt=f"[{msg.topic}] summarize {len(msg.docs)} docs")


async def run() -> PackOut:
    triage_node = Node(triage, name="triage", policy=NodePolicy(validate="both"))
    retrieve_node = Node(retrieve, name="retrieve", policy=NodePolicy(validate="both"))
    pack_node = Node(pack, name="pack", policy=NodePolicy(validate="both"))

    registry = ModelRegistry()
    registry.register("triage", TriageIn, TriageOut)
    registry.register("retrieve", TriageOut, RetrieveOut)
    registry.register("pack", RetrieveOut, PackOut)

    flow = create(triage_node.to(retrieve_node), retrieve_node.to(pack_node))
    flow.run(registry=registry)
    try:
        # the registry validates (and casts) the input into TriageIn at the first node
        await flow.emit({"text": "show marketing metrics"})
        result: PackOut = await flow.fetch()
    finally:
        await flow.stop()
    return result


def main() -> None:
    result = asyncio.run(run())
    print(result.prompt)


if __name__ == "__main__":
    main()
