"""Server settings: Avtomatika's environment names (``API_HOST``, ``CLIENT_TOKEN``, ``GLOBAL_WORKER_TOKEN``,
``WORKERS_CONFIG_PATH``, ``CLIENTS_CONFIG_PATH``, ``ENABLE_CLIENT_API``, ``DETAILED_API_RESPONSES``, ...),
read through :class:`podium.settings.PodiumSettings` (files ``server.settings.toml``, ``settings.toml``,
...)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from podium.settings import PodiumSettings, SettingsConfigDict

__all__ = ["ServerSettings"]


class ServerSettings(PodiumSettings):
    """Everything ``podium serve`` and :func:`podium.server.create_app` read."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", validate_default=True)
    component: ClassVar[str] = "server"

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)
    api_prefix: str = "api"

    client_token: str | None = None
    """A single client token (Avtomatika's ``CLIENT_TOKEN``), beside those of ``clients.toml``."""
    clients_config_path: Path | None = None
    global_worker_token: str | None = None
    workers_config_path: Path | None = None

    enable_client_api: bool = True
    detailed_api_responses: bool = False
    verify_worker_signatures: bool = True
    """Check the HMAC ``security.signature`` a worker puts on its messages, when it sends one."""

    worker_poll_timeout_s: float = Field(default=30.0, ge=0, le=300)
    """The longest a ``tasks/next`` long poll is held open."""
    worker_heartbeat_interval_s: float = Field(default=15.0, gt=0)
    worker_timeout_s: float = Field(default=60.0, gt=0)
    """A worker not heard from for this long is shown as ``offline``."""

    webhook_queue_size: int = Field(default=1000, ge=1)
    webhook_concurrency: int = Field(default=4, ge=1)
    webhook_max_attempts: int = Field(default=5, ge=1)
    webhook_backoff_s: float = Field(default=1.0, ge=0)
    webhook_backoff_max_s: float = Field(default=60.0, ge=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)

    rate_limiting_enabled: bool = False
    """Avtomatika's ``RATE_LIMITING_ENABLED`` (on by default there). Off by default here: podium's workers batch
    results and poll far more than 100 requests a minute each; turn it on for servers open to untrusted
    clients. Limits are per client / per worker and operation class, per ``rate_limit_period`` seconds."""
    rate_limit_limit: int = Field(default=100, ge=1)
    rate_limit_heartbeat_limit: int = Field(default=120, ge=1)
    rate_limit_poll_limit: int = Field(default=60, ge=1)
    rate_limit_period: float = Field(default=60.0, gt=0)

    schedules_config_path: Path | None = None
    """``schedules.toml`` of the native scheduler (Avtomatika's ``SCHEDULES_CONFIG_PATH``)."""

    tracing: Literal["off", "otlp", "console"] = "off"
    """OpenTelemetry spans of jobs, states and tasks (``TRACING``, ``podium serve --tracing``; extra ``otel``):
    ``otlp`` to the collector the standard ``OTEL_EXPORTER_OTLP_*`` environment names, ``console`` as JSON on
    stdout (see :mod:`podium.ops.tracing`). Remote workers then get each task's W3C ``traceparent``."""

    shutdown_grace_s: float = Field(default=5.0, ge=0)
    """How long a stopping server lets open requests (long polls) finish."""

    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    """The largest request body any route reads (``MAX_BODY_BYTES``, default 16 MiB): a larger one is
    answered 413 before it is read (by its ``Content-Length``) or as soon as it passes the limit (chunked)."""

    max_page_size: int = Field(default=500, ge=1)
