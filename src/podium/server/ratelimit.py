"""Rate limiting at the server's edge: who is asking, which operation class, and the 429.

Runs in the pure-ASGI front before any route (Avtomatika applies its limiter to every entry point): a worker
request is counted under its ``X-Worker-ID`` once its ``X-Worker-Token`` checks out, a client request under its
client's name once its ``X-Client-Token`` does (requests with bad credentials are left to the routes, which
refuse them with 401; counting them would let anyone spend another identity's budget). Operation classes:
``heartbeat`` (``/_worker/workers/{id}``, not DELETE; not ``register``), ``poll`` (``.../tasks/next``), ``other``. The public
routes (health, metrics, docs) are not limited. Counting is :class:`podium.ops.RateLimiter`'s, in the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from podium.ops.ratelimit import RateLimiter, RateLimits
from podium.server.settings import ServerSettings
from podium.store import Store
from podium.wire import rxon

__all__ = ["check_request", "limiter_from_settings", "operation_class"]

_WORKERS = f"{rxon.WORKER_API_PREFIX}/workers/"
_PUBLIC = "/_public"


def limiter_from_settings(store: Store, settings: ServerSettings, clock: Any) -> RateLimiter | None:
    """The limiter ``RATE_LIMITING_ENABLED`` and ``RATE_LIMIT_*`` ask for, ``None`` when disabled."""
    if not settings.rate_limiting_enabled:
        return None
    limits = RateLimits(
        limit=settings.rate_limit_limit,
        heartbeat_limit=settings.rate_limit_heartbeat_limit,
        poll_limit=settings.rate_limit_poll_limit,
        period_s=settings.rate_limit_period,
    )
    return RateLimiter(store, limits, clock=clock)


def operation_class(method: str, path: str) -> str:
    """``heartbeat``, ``poll`` or ``other`` for a worker route."""
    if path.startswith(_WORKERS):
        rest = path[len(_WORKERS) :]
        if rest.endswith("/tasks/next"):
            return "poll"
        if rest and "/" not in rest and rest != "register" and method != "DELETE":
            return "heartbeat"
    return "other"


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> tuple[str | None, str | None, str | None]:
    worker_id = worker_token = client_token = None
    for key, value in raw:
        if key == b"x-worker-id":
            worker_id = value.decode("latin-1")
        elif key == b"x-worker-token":
            worker_token = value.decode("latin-1")
        elif key == b"x-client-token":
            client_token = value.decode("latin-1")
    return worker_id, worker_token, client_token


async def check_request(st: Any, limiter: RateLimiter, scope: dict[str, Any]) -> None:
    """Count the request against its identity's limit; :class:`~podium.ops.RateLimited` when over it."""
    path: str = scope["path"]
    if path.startswith(_PUBLIC):
        return
    worker_id, worker_token, client_token = _headers(scope["headers"])
    if path.startswith(rxon.WORKER_API_PREFIX):
        if worker_id and st.worker_tokens.verify(worker_id, worker_token):
            await limiter.check("worker", worker_id, operation_class(scope["method"], path))
        return
    client = st.clients.authenticate(client_token) if client_token else None
    if client is not None:
        await limiter.check("client", client.name, "other")
