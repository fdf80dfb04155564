"""A ReactPlanner run printing every prompt its LLM is shown, byte for byte (run on PenguiFlow 2.2.5 itself and
on podium.flow through the import hook; tests/flow/test_planner_prompts_match.py compares the two).

Sequential steps, a parallel plan with a join whose arguments are filled, one with a failing branch (the join
is skipped), unicode, quotes, separators inside strings, floats and nested data in arguments and outputs.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from penguiflow import ModelRegistry, Node
from penguiflow.catalog import build_catalog, tool
from penguiflow.planner import ReactPlanner
from pydantic import BaseModel


class Topic(BaseModel):
    topic: str
    limit: int = 2
    weight: float = 0.5


class Docs(BaseModel):
    topic: str
    docs: list[str]
    meta: dict[str, Any] = {}


class Summary(BaseModel):
    expect: int
    results: list[Docs]
    success_count: int


@tool(desc="search, 'quoted' and: with, separators")
async def search(args: Topic, ctx: Any) -> Docs:
    docs = [f'{args.topic} #{i}: "a, b"' for i in range(args.limit)]
    return Docs(topic=args.topic, docs=docs, meta={"score": args.weight * 3, "tags": ["x:y", "é"], "n": None})


@tool(desc="summarise")
async def summarise(args: Summary, ctx: Any) -> Docs:
    return Docs(topic="all", docs=[doc for result in args.results for doc in result.docs][: args.expect])


@tool(desc="breaks")
async def breaks(args: Topic, ctx: Any) -> Docs:
    raise LookupError(f"no {args.topic}")


class RecordingLLM:
    def __init__(self, replies: list[dict[str, Any]]) -> None:
        self._replies = [json.dumps(reply) for reply in replies]

    async def complete(self, *, messages: Any, response_format: Any = None) -> str:
        for message in messages:
            print(f"{message['role']}: {message['content']}")
        print("--")
        return self._replies.pop(0)


REPLIES: list[dict[str, Any]] = [
    {"thought": "look", "next_node": "search", "args": {"topic": 'seals\nand "walruses"', "weight": 1e-05}},
    {
        "thought": "fan out",
        "plan": [
            {"node": "search", "args": {"topic": "a,b:c", "limit": 3}},
            {"node": "search", "args": {"topic": "ü"}},
        ],
        "join": {"node": "summarise", "args": {"expect": 4}},
    },
    {
        "thought": "again",
        "plan": [{"node": "search", "args": {"topic": "x"}}, {"node": "breaks", "args": {"topic": "y"}}],
        "join": {"node": "summarise"},
    },
    {"thought": "done", "next_node": None, "args": {"answer": "ok", "n": 1.5}},
]


async def main() -> None:
    registry = ModelRegistry()
    registry.register("search", Topic, Docs)
    registry.register("breaks", Topic, Docs)
    registry.register("summarise", Summary, Docs)
    nodes = [Node(search, name="search"), Node(breaks, name="breaks"), Node(summarise, name="summarise")]
    planner = ReactPlanner(llm_client=RecordingLLM(REPLIES), catalog=build_catalog(nodes, registry))
    result = await planner.run("find seals", context_meta={"tenant": "acme", "depth": 2})
    print(result.reason)
    print(json.dumps(result.metadata["steps"], sort_keys=True, ensure_ascii=False))


if __name__ == "__main__":
    asyncio.run(main())
