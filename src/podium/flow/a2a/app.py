"""The A2A HTTP app: module-level endpoints reading the adapter from ``app.state``, one error handler.

Imported by :func:`podium.flow.a2a.create_a2a_app` only, so FastAPI loads when an app is built.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from .jsonrpc import agent_card_v1, handle_jsonrpc
from .server import A2AMessagePayload, A2ARequestError, A2AServerAdapter, A2ATaskCancelRequest

__all__ = ["build_app"]


def _adapter(request: Request) -> A2AServerAdapter:
    adapter: A2AServerAdapter = request.app.state.a2a_adapter
    return adapter


async def get_agent(request: Request) -> dict[str, Any]:
    return _adapter(request).agent_card.to_payload()


async def message_send(request: Request, payload: A2AMessagePayload) -> dict[str, Any]:
    return await _adapter(request).handle_send(payload)


async def message_stream(request: Request, payload: A2AMessagePayload) -> StreamingResponse:
    events, task_id, context_id = await _adapter(request).stream(payload)
    headers = {"Cache-Control": "no-cache", "X-A2A-Task-Id": task_id, "X-A2A-Context-Id": context_id}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


async def cancel_task(request: Request, payload: A2ATaskCancelRequest) -> dict[str, Any]:
    return await _adapter(request).cancel(payload)


async def agent_card(request: Request) -> dict[str, Any]:
    return agent_card_v1(_adapter(request), str(request.base_url))


async def jsonrpc(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    return await handle_jsonrpc(_adapter(request), body)


async def request_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, A2ARequestError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)


def build_app(adapter: A2AServerAdapter, *, include_docs: bool = True) -> FastAPI:
    """The app serving ``adapter``: ``GET /agent``, ``POST /message/send|stream``, ``POST /tasks/cancel``;
    and for A2A clients ``GET /.well-known/agent-card.json`` and JSON-RPC at ``POST /``."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await adapter.start()
        try:
            yield
        finally:
            await adapter.stop()

    card = adapter.agent_card
    app = FastAPI(
        title=card.name,
        description=card.description,
        version=card.version,
        docs_url="/docs" if include_docs else None,
        openapi_url="/openapi.json" if include_docs else None,
        lifespan=lifespan,
    )
    app.state.a2a_adapter = adapter
    app.add_exception_handler(A2ARequestError, request_error)
    app.add_api_route("/agent", get_agent, methods=["GET"])
    app.add_api_route("/message/send", message_send, methods=["POST"])
    app.add_api_route("/message/stream", message_stream, methods=["POST"])
    app.add_api_route("/tasks/cancel", cancel_task, methods=["POST"])
    # the A2A protocol's own binding, for official A2A clients (jsonrpc.py)
    app.add_api_route("/.well-known/agent-card.json", agent_card, methods=["GET"])
    app.add_api_route("/", jsonrpc, methods=["POST"])
    return app
