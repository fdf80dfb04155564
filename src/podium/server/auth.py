"""Who is asking: a request's client (``X-Client-Token``, counted against its quotas) or worker
(``X-Worker-ID`` + ``X-Worker-Token``), and the signature on a worker's message.

Reads the registries of :mod:`podium.server.security` and the counters of :mod:`podium.server.quotas` from the
app's :class:`~podium.server._state.ServerState`; refuses with :class:`~podium.server.errors.ApiError` (401,
403) and lets :class:`~podium.server.quotas.QuotaExceeded` out for the error table. It must not look at jobs
or tasks.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from podium.server._state import ServerState
from podium.server.errors import ApiError
from podium.server.security import ClientConfig
from podium.wire import rxon

__all__ = [
    "authenticate_client",
    "authenticate_worker",
    "check_signature",
    "request_admin",
    "request_client",
    "request_worker",
]


def authenticate_client(st: ServerState, token: str | None) -> ClientConfig:
    """The client a token belongs to (401 for none); its request is counted separately."""
    client = st.clients.authenticate(token)
    if client is None:
        st.metrics.auth_failures.labels("client").inc()
        raise ApiError(401, f"{'missing' if not token else 'invalid'} {rxon.AUTH_HEADER_CLIENT} header")
    return client


async def request_client(request: Request) -> ClientConfig:
    """Authenticate the request's client and count the request against its quotas (once per request)."""
    cached: ClientConfig | None = getattr(request.state, "client", None)
    if cached is not None:
        return cached
    st: ServerState = request.app.state.podium
    client = authenticate_client(st, request.headers.get(rxon.AUTH_HEADER_CLIENT))
    await st.quotas.count(client)
    request.state.client = client
    return client


async def request_admin(request: Request) -> ClientConfig:
    """The request's client, if it may administer (403 if not)."""
    client = await request_client(request)
    st: ServerState = request.app.state.podium
    if not st.clients.may_administer(client):
        raise ApiError(403, f"client '{client.name}' is not an administrator")
    return client


def authenticate_worker(
    st: ServerState, header_id: str | None, token: str | None, claimed: str | None = None
) -> tuple[str, str]:
    """Authenticate a worker; return ``(worker_id, token)``. Every id the request names must agree."""
    if header_id and claimed and header_id != claimed:
        st.metrics.auth_failures.labels("worker").inc()
        raise ApiError(403, f"worker id mismatch: {' vs '.join(sorted((header_id, claimed)))}")
    worker_id = header_id or claimed
    if not worker_id or not token or not st.worker_tokens.verify(worker_id, token):
        st.metrics.auth_failures.labels("worker").inc()
        what = "missing" if not token else "invalid"
        raise ApiError(401, f"{what} {rxon.AUTH_HEADER_WORKER} for worker {worker_id or '(unnamed)'}")
    return worker_id, token


def request_worker(request: Request, claimed: str | None = None) -> tuple[str, str]:
    """Authenticate the worker of a request; return ``(worker_id, token)``."""
    headers = request.headers
    return authenticate_worker(
        request.app.state.podium,
        headers.get(rxon.AUTH_HEADER_WORKER_ID),
        headers.get(rxon.AUTH_HEADER_WORKER),
        claimed,
    )


def check_signature(st: ServerState, body: dict[str, Any], worker_id: str, token: str) -> None:
    """Check the HMAC ``security.signature`` on a worker's message, when it carries one (403 if wrong)."""
    security = body.get("security")
    if not st.settings.verify_worker_signatures or not isinstance(security, dict):
        return
    signature = security.get("signature")
    if not signature:
        return
    signer = security.get("signer_id")
    if signer and signer != worker_id:
        raise ApiError(403, f"message signed by {signer!r}, sent by worker {worker_id!r}")
    ignore = ("bubbling_chain",) if "event_type" in body else ()
    if not rxon.verify_signature(body, str(signature), token, ignore_fields=ignore):
        st.metrics.auth_failures.labels("signature").inc()
        raise ApiError(403, f"invalid message signature from worker {worker_id!r}")
