"""Approval gate: a tool pauses the run for a human; the run resumes later, here in a new planner on the
same SQLite database, as after a restart.

Run: python examples/agents/pause_resume.py
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from podium.flow import ModelRegistry, Node, build_catalog, tool
from podium.flow.planner import PlannerFinish, PlannerPause, ReactPlanner, ScriptedLLM
from podium.store.flow_state import StoreStateStore
from podium.store.sqlite import SQLiteStore

SENT: list[str] = []


class Report(BaseModel):
    title: str


class Receipt(BaseModel):
    sent_to: str


@tool(desc="Ask a human to approve sending a report", side_effects="external")
async def approval(args: Report, ctx: Any) -> Report:
    await ctx.pause("approval_required", {"title": args.title, "requested_by": ctx.meta["user"]})
    return args


@tool(desc="Email the report to the field station", side_effects="write")
async def send(args: Report, _ctx: Any) -> Receipt:
    SENT.append(args.title)
    return Receipt(sent_to="station@antarctica.example")


def build_planner(store: StoreStateStore, replies: list[dict[str, Any]]) -> ReactPlanner:
    registry = ModelRegistry()
    registry.register("approval", Report, Report)
    registry.register("send", Report, Receipt)
    nodes = [Node(approval, name="approval"), Node(send, name="send")]
    return ReactPlanner(
        llm_client=ScriptedLLM(replies),
        catalog=build_catalog(nodes, registry),
        state_store=store,
    )


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        await approve_and_send(Path(folder) / "podium.db")


async def approve_and_send(database: Path) -> None:
    async with SQLiteStore(database) as store:
        first = build_planner(
            StoreStateStore(store),
            [{"thought": "ask", "next_node": "approval", "args": {"title": "weekly census"}}],
        )
        paused = await first.run("Send the weekly census", context_meta={"user": "ada"})
    assert isinstance(paused, PlannerPause)
    print(f"paused: {paused.reason} {paused.payload}; sent so far: {SENT}")

    # later, in another process: same database, the token from the pause, the human's answer
    async with SQLiteStore(database) as store:
        replies = [
            {"thought": "approved, send", "next_node": "send", "args": {"title": "weekly census"}},
            {"thought": "done", "next_node": None, "args": {"status": "sent"}},
        ]
        second = build_planner(StoreStateStore(store), replies)
        result = await second.resume(paused.resume_token, user_input="approved by Grace")
    assert isinstance(result, PlannerFinish)
    print(
        f"resumed: {[s['action']['next_node'] for s in result.metadata['steps']]} -> {result.payload}; sent: {SENT}"
    )


if __name__ == "__main__":
    asyncio.run(main())
