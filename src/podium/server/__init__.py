"""The podium server: one ASGI app (FastAPI) for the client API, the RXON worker protocol and public routes.

::

    from podium.engine.engine import OrchestratorEngine
    from podium.server import ServerSettings, create_app

    app = create_app(engine, ServerSettings(client_token="...", global_worker_token="..."))
    # uvicorn.run(app) -- or `podium serve`
"""

from __future__ import annotations

from podium.server.app import ApiError, create_app, job_path
from podium.server.quotas import QuotaExceeded, QuotaTracker
from podium.server.runner import RunningServer, start_server
from podium.server.security import ClientRegistry, WorkerTokens
from podium.server.settings import ServerSettings
from podium.server.webhooks import WebhookSender

__all__ = [
    "ApiError",
    "ClientRegistry",
    "QuotaExceeded",
    "QuotaTracker",
    "RunningServer",
    "ServerSettings",
    "WebhookSender",
    "WorkerTokens",
    "create_app",
    "job_path",
    "start_server",
]
