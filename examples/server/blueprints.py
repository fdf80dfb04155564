"""The example's blueprint: transcode a video on a remote worker, then publish it.

Loaded by ``podium serve --blueprints examples/server`` (every ``Blueprint`` in the folder's .py files).
"""

from typing import Any

from podium.engine.blueprint import Blueprint

transcode = Blueprint(
    "transcode",
    api_endpoint="/jobs/transcode",
    api_version="v1",
    input_schema={"type": "object", "required": ["path"], "properties": {"path": {"type": "string"}}},
)


@transcode.handler(is_start=True)
async def start(initial_data: dict[str, Any], actions: Any) -> None:
    actions.dispatch_task(
        "video_transcoding",
        {"path": initial_data["path"]},
        transitions={"success": "publish", "failure": "failed"},
    )


@transcode.handler
async def publish(output_path: str, actions: Any) -> None:
    actions.go_to("finished")


@transcode.handler(is_end=True)
async def finished() -> None:
    return None


@transcode.handler(is_end=True)
async def failed() -> None:
    return None
