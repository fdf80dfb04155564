"""The public routes (``/_public``): liveness, Prometheus metrics, the API docs, Avtomatika's approval webhook.

Owns those endpoints (module-level functions reading the app's :class:`~podium.server._state.ServerState`) and
:func:`public_router`. They need no credential, except the approval webhook: the job's approval token, or
else a client token. Errors leave as exceptions for :mod:`podium.server.errors`. It must not serve the client
or the worker API.

The endpoints carry no docstrings: FastAPI would publish them as OpenAPI descriptions (each route's
``summary=`` says what it does).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from podium.server._state import ServerState
from podium.server.auth import request_client
from podium.server.errors import TOO_LARGE, ApiError, errors_doc
from podium.server.routes_client import find_job
from podium.wire.jobs import ApprovalResponse

__all__ = ["public_router"]


async def health() -> dict[str, Any]:
    return {"status": "ok"}


async def status() -> dict[str, str]:
    return {"status": "ok"}


async def metrics(request: Request) -> Response:
    st: ServerState = request.app.state.podium
    return Response(generate_latest(st.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def docs() -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/_public/openapi.json", title="podium API")


async def approval_webhook(job_id: str, request: Request, token: str | None = None) -> ApprovalResponse:
    st: ServerState = request.app.state.podium
    try:
        raw = await request.json()
    except ValueError:
        raw = None
    body: dict[str, Any] = raw if isinstance(raw, dict) else {}
    token = token or (body.get("token") if isinstance(body.get("token"), str) else None)
    client = await request_client(request) if token is None else None  # without the job's token, a client's
    if raw is None:
        raise ApiError(400, "the body is not valid JSON")
    decision = body.get("decision")
    if not isinstance(decision, str) or not decision:
        raise ApiError(422, "decision is required", field="decision")
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    await find_job(st, job_id, client)
    await st.engine.resolve_approval(job_id, decision, data, token=token)
    return ApprovalResponse(job_id=job_id)


def public_router() -> APIRouter:
    """The routes under ``/_public`` (the OpenAPI schema itself is FastAPI's, at ``/_public/openapi.json``)."""
    r = APIRouter(prefix="/_public", tags=["public"])
    r.add_api_route("/health", health, methods=["GET"], summary="Liveness")
    r.add_api_route("/status", status, methods=["GET"], summary="Liveness (Avtomatika's route)")
    r.add_api_route(
        "/metrics", metrics, methods=["GET"], summary="Prometheus metrics", response_class=PlainTextResponse
    )
    r.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)
    r.add_api_route(
        "/webhooks/approval/{job_id}",
        approval_webhook,
        methods=["POST"],
        summary="Answer an approval (Avtomatika's route)",
        responses={**errors_doc(400, 403, 404, 409, 422), **TOO_LARGE},
    )
    return r
