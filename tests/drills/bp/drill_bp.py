"""The drills' blueprint: two remote tasks in a row (``double`` then ``inc``), so a job's result crosses
instances at least once when several serve it."""

from typing import Any

from podium.engine.blueprint import Blueprint

drill = Blueprint("drill", api_endpoint="/jobs/drill", api_version="v1")


@drill.handler(is_start=True)
async def start(initial_data: dict[str, Any], actions: Any) -> None:
    actions.dispatch_task("double", {"i": initial_data["i"]}, transitions={"success": "mid"})


@drill.handler
async def mid(a: int, actions: Any) -> None:
    actions.dispatch_task("inc", {"a": a}, transitions={"success": "end"})


@drill.handler(is_end=True)
async def end() -> None:
    return None
