"""The engine's HTTP face for Avtomatika-style embedding: ``await engine.start()`` serves the API.

Avtomatika's ``OrchestratorEngine.start()`` serves its client and worker APIs; podium's does the same by
running :mod:`podium.server` around the engine. :meth:`OrchestratorEngine.start` loads :func:`serve` by name
(``Config.HTTP_SERVER``, ``"podium.server.embed:serve"``), only when it is asked to serve, so the engine
never imports the server and in-process use never loads it. Owns only that adapter: no routes here.
"""

from __future__ import annotations

from typing import Any

from podium.engine.engine import OrchestratorEngine
from podium.server.runner import start_server
from podium.server.settings import ServerSettings

__all__ = ["serve"]


async def serve(engine: OrchestratorEngine) -> Any:
    """Serve the HTTP API around the started ``engine`` with the settings its :class:`Config` carries
    (``API_HOST``, ``API_PORT``, ``CLIENT_TOKEN``, ``GLOBAL_WORKER_TOKEN``, ``*_CONFIG_PATH``,
    ``DETAILED_API_RESPONSES``, ``WORKER_POLL_TIMEOUT_SECONDS``, ``CLIENT_API_PREFIX``, ``ENABLE_CLIENT_API``); other server settings come from the
    environment and settings files as for ``podium serve``. Returns the running server (``.url``,
    ``await .stop()``); the engine stays the caller's to stop."""
    cfg = engine.config
    settings = ServerSettings.load(
        api_host=cfg.API_HOST,
        api_port=cfg.API_PORT,
        client_token=cfg.CLIENT_TOKEN or None,
        global_worker_token=cfg.GLOBAL_WORKER_TOKEN or None,
        clients_config_path=cfg.CLIENTS_CONFIG_PATH or None,
        workers_config_path=cfg.WORKERS_CONFIG_PATH or None,
        detailed_api_responses=cfg.DETAILED_API_RESPONSES,
        api_prefix=cfg.CLIENT_API_PREFIX.strip("/") or "api",
        enable_client_api=cfg.ENABLE_CLIENT_API,
        worker_poll_timeout_s=min(cfg.WORKER_POLL_TIMEOUT_SECONDS, 300.0),
    )
    return await start_server(engine, settings, manage_engine=False)
