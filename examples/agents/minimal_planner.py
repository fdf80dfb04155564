"""A minimal ReAct planner: the LLM picks a tool, reads its observation, picks the next, then answers.

The LLM here is scripted (``ScriptedLLM``) so the example runs offline; pass ``llm="gpt-4o-mini"`` (with
``pip install 'podium[llm]'``) instead of ``llm_client=`` to let a real model plan.

Run: python examples/agents/minimal_planner.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from podium.flow import ModelRegistry, Node, build_catalog, tool
from podium.flow.planner import PlannerFinish, ReactPlanner, ScriptedLLM


class Question(BaseModel):
    text: str


class Intent(BaseModel):
    intent: str


class Documents(BaseModel):
    documents: list[str]


@tool(desc="Classify what the caller wants", tags=["nlp"])
async def triage(args: Question, _ctx: Any) -> Intent:
    return Intent(intent="colony-size" if "how many" in args.text.lower() else "general")


@tool(desc="Look up field notes for an intent", side_effects="read")
async def field_notes(args: Intent, _ctx: Any) -> Documents:
    return Documents(documents=[f"{args.intent}: 1,200 breeding pairs counted in 2024"])


def build_planner(llm: ScriptedLLM) -> ReactPlanner:
    registry = ModelRegistry()
    registry.register("triage", Question, Intent)
    registry.register("field_notes", Intent, Documents)
    nodes = [Node(triage, name="triage"), Node(field_notes, name="field_notes")]
    return ReactPlanner(llm_client=llm, catalog=build_catalog(nodes, registry), max_iters=5)


async def main() -> None:
    llm = ScriptedLLM(
        [
            {"thought": "classify", "next_node": "triage", "args": {"text": "How many penguins nest here?"}},
            {"thought": "look it up", "next_node": "field_notes", "args": {"intent": "colony-size"}},
            {"thought": "answer", "next_node": None, "args": {"answer": "About 1,200 breeding pairs."}},
        ]
    )
    result = await build_planner(llm).run("How many penguins nest here?")
    assert isinstance(result, PlannerFinish)
    for step in result.metadata["steps"]:
        print(f"{step['action']['next_node']}: {step['observation']}")
    print(f"{result.reason}: {result.payload['answer']}")
    print(f"the LLM was asked {len(llm.calls)} times; it saw {len(llm.calls[-1])} messages last")


if __name__ == "__main__":
    asyncio.run(main())
