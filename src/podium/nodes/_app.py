"""The FastAPI app that serves a :class:`~podium.nodes.RestNode` over MADSci's node REST protocol."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError
from starlette.background import BackgroundTask

from podium.errors import InvalidInputError
from podium.tokens import TokenGuard
from podium.wire.madsci_node import (
    LONG_POLL_HEADER,
    NODE_STATUS_HEADER,
    AdminCommands,
    NodeSetConfigResponse,
)

if TYPE_CHECKING:
    from podium.nodes._node import RestNode

__all__ = ["MAX_LONG_POLL_S", "create_node_app"]

MAX_LONG_POLL_S = 30.0
"""The longest a status request with ``?wait_s=`` is held."""


def create_node_app(node: RestNode) -> FastAPI:
    """Build the app: MADSci 0.8.1's routes and JSON shapes, plus podium's long-poll extension.

    When the node has ``api_tokens``, every route but the docs (``/docs``, ``/openapi.json``) needs one.
    """

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        node.ensure_started()
        try:
            yield
        finally:
            await node.aclose()

    app = FastAPI(
        title=node.name,
        description=node.info.node_description or f"REST API for {node.name}",
        version=node.info.module_version,
        lifespan=lifespan,
    )

    @app.get("/status")
    async def get_status() -> JSONResponse:
        return JSONResponse(node.status.model_dump(mode="json"))

    @app.get("/info")
    async def get_info() -> JSONResponse:
        return JSONResponse(node.info.model_dump(mode="json"))

    @app.get("/state")
    async def get_state() -> JSONResponse:
        return JSONResponse(node.state_handler())

    @app.get("/log")
    async def get_log() -> JSONResponse:
        return JSONResponse(
            {eid: ev.model_dump(mode="json", by_alias=True) for eid, ev in list(node._log.items())}
        )

    @app.post("/config")
    async def set_config(new_config: dict[str, Any]) -> JSONResponse:
        node.config.update(new_config)
        node.info.config = node.config
        return JSONResponse(NodeSetConfigResponse(success=True).model_dump(mode="json"))

    @app.post("/admin/{admin_command}")
    async def admin(admin_command: str) -> JSONResponse:
        # MADSci's RestNodeClient on Python 3.11 formats the enum into the URL as "AdminCommands.LOCK";
        # accept that spelling too.
        value = admin_command.removeprefix("AdminCommands.").lower()
        try:
            command = AdminCommands(value)
        except ValueError:
            expected = ", ".join(repr(c.value) for c in AdminCommands)
            detail = [
                {
                    "type": "enum",
                    "loc": ["path", "admin_command"],
                    "msg": f"Input should be {expected}",
                    "input": admin_command,
                }
            ]
            return JSONResponse({"detail": detail}, status_code=422)
        return JSONResponse(node.run_admin_command(command).model_dump(mode="json"))

    @app.get("/action")
    async def history(action_id: str | None = None) -> JSONResponse:
        hist = node.action_history(action_id)
        return JSONResponse(
            {aid: [r.model_dump(mode="json") for r in results] for aid, results in hist.items()}
        )

    @app.post("/action/{action_name}")
    async def create(action_name: str, request: Request) -> JSONResponse:
        if action_name not in node.actions:
            raise HTTPException(404, f"Action {action_name!r} is not offered by node {node.name!r}")
        try:
            body = await request.json() if await request.body() else {}
        except ValueError:
            raise HTTPException(422, "The body must be a JSON object") from None
        if not isinstance(body, dict):
            raise HTTPException(422, "The body must be a JSON object")
        try:
            action_id = node.create_action(action_name, body)
        except ValidationError as exc:
            detail = [
                {
                    "type": e["type"],
                    "loc": ["body", "args", *e["loc"]],
                    "msg": e["msg"],
                    "input": e.get("input"),
                }
                for e in exc.errors(include_url=False)
            ]
            return JSONResponse({"detail": _jsonable(detail)}, status_code=422)
        except InvalidInputError as exc:
            raise HTTPException(422, str(exc)) from None
        return JSONResponse({"action_id": action_id})

    @app.post("/action/{action_name}/{action_id}/upload/{file_arg}")
    async def upload(action_name: str, action_id: str, file_arg: str, request: Request) -> JSONResponse:
        from podium.nodes._node import _safe_filename, iter_form_files

        if action_id not in node._pending:
            raise HTTPException(404, f"Action {action_id} is not waiting for files (create it first)")
        spec = node.actions.get(action_name)
        if spec is None or file_arg not in spec.file_params:
            raise HTTPException(404, f"Action {action_name!r} has no file argument {file_arg!r}")
        form = await request.form()
        folder = node.pending_upload_dir(action_id) / file_arg
        folder.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        try:
            for upload in iter_form_files(form):
                path = folder / _safe_filename(upload.filename or f"upload_{len(paths)}")
                path.write_bytes(await upload.read())
                paths.append(path)
        finally:
            await form.close()
        if not paths:
            raise HTTPException(422, "No file in the multipart body (send it in a field named 'file')")
        count = node.attach_files(action_id, file_arg, paths)
        body: dict[str, Any] = {"status": "uploaded", "file_arg": file_arg}
        if spec.file_params[file_arg].is_list:
            body["file_count"] = count
        return JSONResponse(body)

    @app.post("/action/{action_name}/{action_id}/start")
    async def start(action_name: str, action_id: str, wait_s: float | None = None) -> JSONResponse:
        # podium extension: with ``wait_s`` the answer comes when the action ends (or then), with the
        # final result and the node's status after it: one request instead of start/status/result/status.
        result = node.start_action(action_id)
        if wait_s is None or wait_s <= 0:
            return JSONResponse(result.model_dump(mode="json"))
        run = node.get_run(action_id)
        if run is not None and not run.status.is_terminal:
            with contextlib.suppress(TimeoutError):
                await node.clock.wait_for(run.done.wait(), min(wait_s, MAX_LONG_POLL_S))
            result = node.action_result(action_id)
        headers = {
            LONG_POLL_HEADER: "1",
            NODE_STATUS_HEADER: node.status.model_dump_json(exclude_none=True),
        }
        return JSONResponse(result.model_dump(mode="json"), headers=headers)

    async def status(action_id: str, wait_s: float | None) -> JSONResponse:
        run = node.get_run(action_id)
        headers: dict[str, str] = {}
        if wait_s is not None and wait_s > 0 and run is not None and not run.status.is_terminal:
            with contextlib.suppress(TimeoutError):
                await node.clock.wait_for(run.done.wait(), min(wait_s, MAX_LONG_POLL_S))
            headers[LONG_POLL_HEADER] = "1"
        return JSONResponse(node.action_status(action_id).value, headers=headers)

    def download(action_id: str) -> FileResponse:  # called from the async routes, on the loop
        result = node.action_result(action_id)
        fd, name = tempfile.mkstemp(suffix=".zip", prefix="podium-node-")
        os.close(fd)
        zip_path = Path(name)
        if not node.write_files_zip(action_id, zip_path):
            zip_path.unlink(missing_ok=True)
            if result.status.value != "succeeded":
                raise HTTPException(
                    400,
                    f"Action {action_id} did not succeed (status: {result.status.value}). "
                    "Cannot download files from failed action.",
                )
            raise HTTPException(
                404, f"Action {action_id} completed successfully but produced no file results"
            )
        return FileResponse(
            zip_path,
            filename=f"{action_id}_files.zip",
            media_type="application/zip",
            background=BackgroundTask(zip_path.unlink, missing_ok=True),
        )

    @app.get("/action/{action_name}/{action_id}/status")
    async def named_status(action_name: str, action_id: str, wait_s: float | None = None) -> JSONResponse:
        return await status(action_id, wait_s)

    @app.get("/action/{action_name}/{action_id}/result")
    async def named_result(action_name: str, action_id: str) -> JSONResponse:
        return JSONResponse(node.action_result(action_id).model_dump(mode="json"))

    @app.get("/action/{action_name}/{action_id}/download")
    async def named_download(action_name: str, action_id: str) -> FileResponse:
        return download(action_id)

    @app.get("/action/{action_id}/status")
    async def bare_status(action_id: str, wait_s: float | None = None) -> JSONResponse:
        return await status(action_id, wait_s)

    @app.get("/action/{action_id}/result")
    async def bare_result(action_id: str) -> JSONResponse:
        return JSONResponse(node.action_result(action_id).model_dump(mode="json"))

    @app.get("/action/{action_id}/download")
    async def bare_download(action_id: str) -> FileResponse:
        return download(action_id)

    node.configure_app(app)
    if node.api_tokens:
        app.add_middleware(TokenGuard, tokens=node.api_tokens, what=f"node {node.name}")
    return app


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)
