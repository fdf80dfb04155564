"""The operations routes of the client API: ``GET /api/v1/schedules`` (the native scheduler's schedules with
their next run times).

Owns those endpoints (module-level functions reading the app's :class:`~podium.server._state.ServerState`) and
:func:`ops_router`. A client token is required, as for the rest of the client API. The endpoints carry no
docstrings: FastAPI would publish them as OpenAPI descriptions.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from podium.server._state import ServerState
from podium.server.auth import request_client
from podium.server.settings import ServerSettings
from podium.wire.jobs import ErrorBody

__all__ = ["ScheduleView", "ops_router"]


class ScheduleView(BaseModel):
    """One schedule of ``schedules.toml`` and where it stands."""

    name: str
    blueprint: str | None = None
    workflow: str | None = None
    trigger: str
    timezone: str | None = None
    missed: str
    next_run_at: str | None = None
    next_run_ts: float | None = None
    last_run_at: str | None = None
    last_job_id: str | None = None
    last_error: str | None = None


async def list_schedules(request: Request) -> list[ScheduleView]:
    st: ServerState = request.app.state.podium
    if st.scheduler is None:
        return []
    return [ScheduleView.model_validate(s) for s in await st.scheduler.describe()]


def ops_router(settings: ServerSettings) -> APIRouter:
    """The operations routes under ``settings.api_prefix``."""
    prefix = f"/{settings.api_prefix.strip('/')}" if settings.api_prefix.strip("/") else ""
    r = APIRouter(
        tags=["operations"],
        responses={401: {"model": ErrorBody}, 429: {"model": ErrorBody}},
        dependencies=[Depends(request_client)],
    )
    r.add_api_route(
        f"{prefix}/v1/schedules",
        list_schedules,
        methods=["GET"],
        response_model=list[ScheduleView],
        summary="The native scheduler's schedules, with their next run times",
    )
    return r
