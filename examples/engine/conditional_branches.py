"""Conditional branches: `.when()` expressions (nested fields, and/or/not, in) with a default fallback.

Run: python examples/engine/conditional_branches.py
"""

from __future__ import annotations

import asyncio

from podium.engine import ActionFactory, Blueprint, F, OrchestratorEngine
from podium.engine.storage import MemoryStorage

bp = Blueprint("triage")


@bp.handler(is_start=True)
async def start(actions: ActionFactory) -> None:
    actions.go_to("route")


@bp.handler().when(
    "context.initial_data.ticket.priority >= 8 and initial_data.ticket.kind in ['outage', 'security']"
)
async def route(actions: ActionFactory) -> None:
    actions.go_to("page_oncall")


@bp.handler("route", F.initial_data["ticket"]["kind"] == "question")  # Avtomatika 1.0b30's F filters work too
async def route_question(actions: ActionFactory) -> None:
    actions.go_to("faq")


@bp.handler("route")
async def route_default(actions: ActionFactory) -> None:
    actions.go_to("backlog")


@bp.handler(is_end=True)
async def page_oncall() -> None: ...


@bp.handler(is_end=True)
async def faq() -> None: ...


@bp.handler(is_end=True)
async def backlog() -> None: ...


async def run() -> dict[str, str]:
    engine = OrchestratorEngine(MemoryStorage(), serve_http=False)  # in-process only: no HTTP API
    engine.register_blueprint(bp)
    tickets = {
        "db down": {"priority": 9, "kind": "outage"},
        "how to": {"priority": 1, "kind": "question"},
        "typo": {"priority": 2, "kind": "bug"},
    }
    out = {}
    async with engine:
        for title, ticket in tickets.items():
            job = await engine.wait_for_job(
                await engine.create_job("triage", {"ticket": ticket}), timeout_s=10
            )
            out[title] = job.state
            print(f"{title!r:10} -> {job.state}")
    return out


def main() -> dict[str, str]:
    return asyncio.run(run())


if __name__ == "__main__":
    main()
