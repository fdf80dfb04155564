"""A parallel plan: the LLM fans one question out to several tools at once and a join tool merges them.

The join's ``expect`` and ``results`` are filled in by the planner from the branches.

Run: python examples/agents/parallel_planner.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from podium.flow import ModelRegistry, Node, build_catalog, tool
from podium.flow.planner import PlannerFinish, ReactPlanner, ScriptedLLM

STARTED: list[str] = []


class Survey(BaseModel):
    colony: str


class Count(BaseModel):
    source: str
    pairs: int


class Merge(BaseModel):
    expect: int
    results: list[Count]


class Estimate(BaseModel):
    pairs: int
    sources: list[str]


async def _count(source: str, pairs: int, gate: asyncio.Event) -> Count:
    STARTED.append(source)
    if len(STARTED) == 2:
        gate.set()
    await asyncio.wait_for(gate.wait(), 1)  # returns only once both surveys run at the same time
    return Count(source=source, pairs=pairs)


GATE = asyncio.Event()


@tool(desc="Count nests on drone images", side_effects="read")
async def drone_survey(args: Survey, _ctx: Any) -> Count:
    return await _count("drone", 1180, GATE)


@tool(desc="Count nests from the ground team's log", side_effects="read")
async def ground_survey(args: Survey, _ctx: Any) -> Count:
    return await _count("ground", 1220, GATE)


@tool(desc="Average the surveys")
async def merge(args: Merge, ctx: Any) -> Estimate:
    assert ctx.meta["parallel_success_count"] == args.expect
    return Estimate(
        pairs=sum(r.pairs for r in args.results) // args.expect, sources=[r.source for r in args.results]
    )


async def main() -> None:
    registry = ModelRegistry()
    registry.register("drone_survey", Survey, Count)
    registry.register("ground_survey", Survey, Count)
    registry.register("merge", Merge, Estimate)
    nodes = [
        Node(drone_survey, name="drone_survey"),
        Node(ground_survey, name="ground_survey"),
        Node(merge, name="merge"),
    ]
    llm = ScriptedLLM(
        [
            {
                "thought": "ask both surveys at once",
                "plan": [
                    {"node": "drone_survey", "args": {"colony": "cape-adare"}},
                    {"node": "ground_survey", "args": {"colony": "cape-adare"}},
                ],
                "join": {"node": "merge"},
            },
            {"thought": "done", "next_node": None, "args": {"answer": "about 1,200 pairs"}},
        ]
    )
    planner = ReactPlanner(llm_client=llm, catalog=build_catalog(nodes, registry))
    result = await planner.run("How many pairs nest at Cape Adare?")
    assert isinstance(result, PlannerFinish)
    step = result.metadata["steps"][0]["observation"]
    print(f"branches: {[b['node'] for b in step['branches']]} stats={step['stats']}")
    print(f"join: {step['join']['observation']}")
    print(f"{result.reason}: {result.payload['answer']}")


if __name__ == "__main__":
    asyncio.run(main())
