"""Replanning: a tool fails; the LLM reads the structured failure (error code, message, suggestion) and
takes another way. A hop budget bounds how many tool calls the run may spend.

Run: python examples/agents/replan_after_error.py
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import BaseModel

from podium.flow import ModelRegistry, Node, build_catalog, tool
from podium.flow.planner import PlannerFinish, ReactPlanner, ScriptedLLM


class Query(BaseModel):
    species: str


class Sightings(BaseModel):
    species: str
    count: int


class SatelliteTimeout(RuntimeError):
    def __init__(self, message: str, suggestion: str) -> None:
        super().__init__(message)
        self.suggestion = suggestion  # the planner passes this on to the LLM


@tool(desc="Live satellite counts", side_effects="external")
async def satellite(args: Query, _ctx: Any) -> Sightings:
    raise SatelliteTimeout("uplink timed out after 30s", "use the cached_counts tool")


@tool(desc="Yesterday's cached counts", side_effects="read")
async def cached_counts(args: Query, _ctx: Any) -> Sightings:
    return Sightings(species=args.species, count=342)


async def main() -> None:
    registry = ModelRegistry()
    registry.register("satellite", Query, Sightings)
    registry.register("cached_counts", Query, Sightings)
    nodes = [Node(satellite, name="satellite"), Node(cached_counts, name="cached_counts")]
    llm = ScriptedLLM(
        [
            {"thought": "live data first", "next_node": "satellite", "args": {"species": "emperor"}},
            {
                "thought": "follow the suggestion",
                "next_node": "cached_counts",
                "args": {"species": "emperor"},
            },
            {"thought": "answer", "next_node": None, "args": {"answer": "342 emperors (cached)"}},
        ]
    )
    planner = ReactPlanner(llm_client=llm, catalog=build_catalog(nodes, registry), hop_budget=3)
    result = await planner.run("How many emperor penguins were seen?")
    assert isinstance(result, PlannerFinish)
    failure = json.loads(llm.calls[1][-1]["content"])["failure"]  # what the LLM read after the failure
    print(
        f"the LLM read: {failure['error_code']}: {failure['message']} (suggestion: {failure['suggestion']})"
    )
    print(
        f"{result.reason}: {result.payload['answer']}; hops used {result.metadata['constraints']['hops_used']} of 3"
    )


if __name__ == "__main__":
    asyncio.run(main())
