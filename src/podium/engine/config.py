"""Engine configuration from environment variables (Avtomatika's names, no prefix).

``Config()`` reads the environment like Avtomatika's; ``Config.load()`` also reads settings files and
raises :class:`~podium.errors.ConfigError` naming the field. Attributes may be changed after creation.
"""

from __future__ import annotations

import socket
from typing import ClassVar

from pydantic import Field

from podium.settings import PodiumSettings, SettingsConfigDict

__all__ = ["Config"]


class Config(PodiumSettings):
    """Settings of :class:`~podium.engine.OrchestratorEngine` (and, later, its HTTP server)."""

    model_config = SettingsConfigDict(
        env_prefix="", extra="ignore", validate_default=True, case_sensitive=False
    )
    component: ClassVar[str] = "engine"

    INSTANCE_ID: str = Field(default_factory=socket.gethostname)
    STORAGE_URL: str = "memory://"
    BLUEPRINTS_DIR: str = ""
    EXECUTOR_MAX_CONCURRENT_JOBS: int = Field(100, ge=1)
    """Handlers running at once in this process; the rest wait in the store's queue."""
    JOB_MAX_RETRIES: int = Field(3, ge=0)
    """Retries of a task failing with a transient error (or timing out) before the job is quarantined."""
    RETRY_BACKOFF_BASE_S: float = Field(1.0, ge=0)
    RETRY_BACKOFF_MAX_S: float = Field(60.0, ge=0)
    JOB_LEASE_S: float = Field(60.0, gt=0)
    """How long a handler run holds its job before another engine instance may run it again."""
    TASK_LEASE_S: float = Field(300.0, gt=0)
    """How long a worker holds a task before it is offered again (at-least-once delivery)."""
    EXECUTOR_POLL_WAIT_S: float = Field(5.0, gt=0)
    WORKER_POLL_TIMEOUT_SECONDS: float = Field(30.0, gt=0)
    WORKER_TIMEOUT_SECONDS: float = 300.0
    STRICT_EVENT_VALIDATION: bool = True
    MAX_TRANSITIONS_PER_JOB: int = Field(1000, ge=1)
    MAX_HOLARCHY_DEPTH: int = Field(10, ge=1)
    STOP_GRACE_S: float = Field(30.0, ge=0)
    """How long ``stop()`` lets running handlers and in-process tasks finish before giving them back."""
    RECOVERY_LOCK_TTL_S: float = Field(15.0, gt=0)
    """TTL of the store lock that makes one engine instance the owner of recovery (refreshed every third)."""
    RECOVERY_SCAN_S: float = Field(60.0, gt=0)
    """How often the recovery owner re-reads open tasks to arm their timeouts (also on taking ownership)."""

    SERVE_HTTP: bool = True
    """Whether ``await engine.start()`` also serves the HTTP API (client and worker routes) on
    ``API_HOST``:``API_PORT``, as Avtomatika's does. Turn it off for purely in-process use (tests, scripts
    with in-process workers); ``OrchestratorEngine(..., serve_http=False)`` does the same. The server app
    (``podium serve``, ``create_app``) starts its engine without it, so nothing is served twice."""

    HTTP_SERVER: str = "podium.server.embed:serve"
    """The entry point (``module:attr``) ``start()`` loads by name to serve the HTTP API: an async function
    taking the started engine and returning the running server (``.url``, ``await .stop()``)."""

    # Read by the HTTP API that start() serves (and by `podium serve` where it has no setting of its own).
    API_HOST: str = "0.0.0.0"
    API_PORT: int = 8082
    CLIENT_TOKEN: str = "secure-orchestrator-token"
    GLOBAL_WORKER_TOKEN: str = "secure-worker-token"
    WORKERS_CONFIG_PATH: str = ""
    CLIENTS_CONFIG_PATH: str = ""
    SCHEDULES_CONFIG_PATH: str = ""
    DETAILED_API_RESPONSES: bool = False
    RATE_LIMITING_ENABLED: bool = True
    LOG_LEVEL: str = "INFO"
    LOG_FORMAT: str = "json"
    TZ: str = "UTC"
