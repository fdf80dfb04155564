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
    CLIENT_API_PREFIX: str = "api"
    """The client API lives under ``/<CLIENT_API_PREFIX>/v1/...`` (honoured by the server ``start()`` serves)."""
    ENABLE_CLIENT_API: bool = True
    """Serve the client API at all (honoured)."""

    AVTOMATIKA_END_STATES: bool = False
    """Avtomatika 1.0b30's exact end-of-job rule: only an end state literally named ``finished`` ends the job
    as ``finished``; any other end state (``end``, ``done``, ...) ends it as ``failed``. podium's default
    (``False``) finishes a job in whichever state is marked ``is_end=True``, as Avtomatika's docs describe."""

    # S3 payload offloading (``task_files``, podium.engine.files), as Avtomatika's.
    S3_ENDPOINT_URL: str = ""
    S3_ACCESS_KEY: str = ""
    S3_SECRET_KEY: str = ""
    S3_REGION: str = "us-east-1"
    S3_DEFAULT_BUCKET: str = "avtomatika-payloads"
    S3_MAX_CONCURRENCY: int = 100
    S3_AUTO_CLEANUP: bool = True
    TASK_FILES_DIR: str = "/tmp/avtomatika-payloads"

    # Accepted so that an Avtomatika configuration loads unchanged, and not used: each is listed with the
    # reason in docs/engine.md ("Differences from Avtomatika"). podium's own settings cover what applies.
    REDIS_HOST: str = ""
    REDIS_PORT: int = 6379
    REDIS_DB: int = 0
    REDIS_STREAM_BLOCK_MS: int = 5000
    REDIS_ENCRYPTION_KEY: str | None = None
    POSTGRES_DSN: str = ""
    HISTORY_DATABASE_URI: str = ""
    ENVIRONMENT: str = "production"
    ORCHESTRATOR_SECRET_KEY: str = ""
    AUDIT_SALT: str = "default_audit_salt"
    WORKER_AUTH_MODE: str = "mixed"
    TLS_ENABLED: bool = False
    TLS_CERT_PATH: str = ""
    TLS_KEY_PATH: str = ""
    TLS_CA_PATH: str = ""
    TLS_REQUIRE_CLIENT_CERT: bool = False
    WORKER_HEALTH_CHECK_INTERVAL_SECONDS: int = 600
    WATCHER_INTERVAL_SECONDS: int = 20
    WATCHER_LIMIT: int = 500
    REPUTATION_PENALTY_CONTRACT_VIOLATION: float = 0.2
    REPUTATION_PENALTY_TASK_FAILURE: float = 0.05
    REPUTATION_REWARD_SUCCESS: float = 0.001
    REPUTATION_MIN_THRESHOLD: float = 0.3
    RATE_LIMIT_LIMIT: int = 100
    RATE_LIMIT_PERIOD: int = 60
    RATE_LIMIT_HEARTBEAT_LIMIT: int = 120
    RATE_LIMIT_POLL_LIMIT: int = 60
    DISPATCHER_SOFT_LIMIT: int = 3
    DISPATCHER_MAX_CANDIDATES: int = 50
    WORK_STEALING_ENABLED: bool = True
    DISPATCHER_CACHE_TTL_S: float = 1.0
    """podium: how long an instance reuses the remote workers it read from the store (0: read every time)."""
    MAX_POLICY_SIZE_BYTES: int = 4096
