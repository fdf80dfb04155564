"""The server's error-to-status table: an exception a route lets out is answered by the rule of its type.

Owns :class:`ApiError` (an answer a route gives on purpose: a refused credential, a malformed body, a job
the client may not see), :data:`ERRORS` (exception type -> the :class:`ApiError` it is answered with, looked
up along the exception's MRO as Starlette does) and :func:`install_error_handlers`, which puts the table on a
FastAPI app; the pure-ASGI fast routes of :mod:`podium.server.app` answer through the same table
(:func:`answer`). Every answer's body is an :class:`~podium.wire.jobs.ErrorBody`.

It must not decide anything about jobs or workers: a rule only translates what the engine, the quotas or a
check already said. An error whose answer names what the request named (``job 'x' not found``) is raised as
an :class:`ApiError` where that name is known.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from podium.engine.errors import JobStateError
from podium.errors import ConfigError, InvalidInputError
from podium.ops.ratelimit import RateLimited
from podium.server._state import ServerState
from podium.server.quotas import QuotaExceeded
from podium.wire.jobs import ErrorBody

__all__ = [
    "ERRORS",
    "TOO_LARGE",
    "ApiError",
    "answer",
    "body_error",
    "errors_doc",
    "install_error_handlers",
]

TOO_LARGE: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "The request body is larger than MAX_BODY_BYTES (not read)"}
}
"""The 413 answer every route with a body documents (the ASGI front gives it, before any route runs)."""

_ERROR_DOCS = {
    400: "The body is not JSON, or not the object the route reads",
    401: "No valid token",
    403: "The token is not allowed this (another worker's id, a wrong approval token)",
    404: "No such job, task, worker, blueprint or trace",
    409: "The job's status does not allow it",
    422: "A field failed validation (``field`` names it)",
    429: "Rate limit or quota reached (``Retry-After`` says when to try again)",
}


def errors_doc(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, each an :class:`~podium.wire.jobs.ErrorBody`."""
    return {status: {"model": ErrorBody, "description": _ERROR_DOCS[status]} for status in statuses}


class ApiError(Exception):
    """An error answer: ``status`` and an :class:`~podium.wire.jobs.ErrorBody`."""

    def __init__(
        self,
        status: int,
        error: str,
        *,
        field: str | None = None,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status, self.body, self.headers = (
            status,
            ErrorBody(error=error, field=field, detail=detail),
            headers,
        )
        super().__init__(error)


def _as_is(_: ServerState, exc: ApiError) -> ApiError:
    return exc


def _quota(st: ServerState, exc: QuotaExceeded) -> ApiError:
    """429 with the quota's body, and ``Retry-After`` when the quota says when it frees up."""
    st.metrics.quota_blocked.labels(exc.quota).inc()
    headers = {"Retry-After": str(max(1, int(exc.retry_after_s + 0.999)))} if exc.retry_after_s else None
    body = exc.body()
    return ApiError(429, body["error"], field=body["field"], detail=body["detail"], headers=headers)


def _rate_limited(st: ServerState, exc: RateLimited) -> ApiError:
    """429 with ``Retry-After`` (seconds until the window ends), counted in orchestrator_ratelimit_blocked_total."""
    st.metrics.ratelimit_blocked.labels(exc.kind, exc.op_class).inc()
    body = exc.body()
    headers = {"Retry-After": str(max(1, int(exc.retry_after_s + 0.999)))}
    return ApiError(429, body["error"], field=body["field"], detail=body["detail"], headers=headers)


def _job_state(_: ServerState, exc: JobStateError) -> ApiError:
    """409: the job's status does not allow it; 403 for a wrong approval token; an unknown approval decision
    names the ``decision`` field."""
    message = str(exc)
    if "approval token" in message:
        return ApiError(403, message)
    return ApiError(409, message, field="decision" if "decision" in message else None)


def _config(_: ServerState, exc: ConfigError) -> ApiError:
    return ApiError(400, str(exc))


def _invalid_input(_: ServerState, exc: InvalidInputError) -> ApiError:
    """422 naming the field: input an engine or store check refused (say, an integer beyond 64 bits in a
    job's data, which no store holds)."""
    return ApiError(422, str(exc), field=exc.field)


def _http_exception(_: ServerState, exc: StarletteHTTPException) -> ApiError:
    """Starlette's and FastAPI's own refusals (a body that does not parse, an unknown route, a method the route
    has not) in the error body every route answers with."""
    return ApiError(exc.status_code, str(exc.detail), headers=dict(exc.headers) if exc.headers else None)


def _invalid_request(_: ServerState, exc: RequestValidationError) -> ApiError:
    """FastAPI's validation of a route's parameters and body: 422 naming the first field that failed."""
    err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
    field = ".".join(loc) or None
    return ApiError(422, f"{field + ': ' if field else ''}{err.get('msg')}", field=field)


Rule = Callable[[ServerState, Any], ApiError]
ERRORS: dict[type[Exception], Rule] = {
    ApiError: _as_is,
    QuotaExceeded: _quota,
    RateLimited: _rate_limited,
    JobStateError: _job_state,
    ConfigError: _config,
    InvalidInputError: _invalid_input,
    RequestValidationError: _invalid_request,
    StarletteHTTPException: _http_exception,
}
"""Exception type -> how it is answered. Anything else is a 500 (and logged)."""


def answer(st: ServerState, exc: BaseException) -> ApiError | None:
    """The answer :data:`ERRORS` gives ``exc`` (the rule of the nearest type in its MRO), or ``None``."""
    for klass in type(exc).__mro__:
        rule = ERRORS.get(klass)
        if rule is not None:
            return rule(st, exc)
    return None


def body_error(exc: ValidationError) -> ApiError:
    """The 422 FastAPI's handler would give for a body that does not validate (for the fast routes)."""
    err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in err.get("loc", ())]
    field = ".".join(loc) or None
    if err.get("type") == "json_invalid":
        return ApiError(422, f"JSON decode error: {err.get('msg')}")
    return ApiError(422, f"{field + ': ' if field else ''}{err.get('msg')}", field=field)


def _handler(rule: Rule) -> Callable[[Request, Exception], Any]:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        error = rule(request.app.state.podium, exc)
        return JSONResponse(
            error.body.model_dump(exclude_none=True), status_code=error.status, headers=error.headers
        )

    return handle


def install_error_handlers(app: FastAPI) -> None:
    """Answer each exception type of :data:`ERRORS` by its rule (Starlette finds the handler by type)."""
    for exc_type, rule in ERRORS.items():
        app.add_exception_handler(exc_type, _handler(rule))
