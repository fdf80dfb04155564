"""Tokens and plans: ``clients.toml``, ``workers.toml``, hashed tokens, constant-time checks, plan quotas
(counted by :mod:`podium.server.quotas`).

``clients.toml`` (Avtomatika's form, plus optional plan tables)::

    [plans.free]                  # quotas shared by every client on the plan (optional)
    requests_per_minute = 60
    monthly_attempts = 1000       # job submissions per calendar month (UTC)
    max_active_jobs = 10

    [client_premium]
    token = "secret-token-123"
    plan = "premium"
    monthly_attempts = 5000       # a client's own value beats its plan's
    admin = true                  # may call /api/v1/admin/*; when no client is admin, every client may
    languages = ["en"]            # anything else is kept and handed to handlers as the client's config

``workers.toml``::

    [gpu-worker-01]
    token = "worker-secret-456"

Both are validated strictly when loaded: a malformed file or a bad value raises
:class:`~podium.errors.ConfigError` naming the file and the line. Tokens are kept only as SHA-256 digests
and compared with :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podium.errors import ConfigError
from podium.tokens import hash_token  # the one implementation, shared with the workcell and nodes
from podium.tomlfile import header_line as _header_line
from podium.tomlfile import key_line as _key_line
from podium.tomlfile import read_toml as _read_toml
from podium.tomlfile import where as _where

__all__ = [
    "QUOTA_KEYS",
    "ClientConfig",
    "ClientRegistry",
    "Quotas",
    "WorkerTokens",
    "hash_token",
    "load_clients_file",
    "load_workers_file",
]

QUOTA_KEYS = ("requests_per_minute", "monthly_attempts", "max_active_jobs")
_RESERVED_CLIENT_KEYS = {"token", "plan", "admin", *QUOTA_KEYS}


@dataclass(frozen=True, slots=True)
class Quotas:
    """Limits; ``None`` means unlimited."""

    requests_per_minute: int | None = None
    monthly_attempts: int | None = None
    max_active_jobs: int | None = None


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """One API client. ``token_hash`` is the SHA-256 of its token; the token itself is not kept."""

    name: str
    token_hash: str
    plan: str = "default"
    quotas: Quotas = field(default_factory=Quotas)
    admin: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """What handlers and job records may see of the client (never the token)."""
        return {"name": self.name, "plan": self.plan, **dict(self.params)}


def _quota_value(path: Path, text: str, table_line: int | None, owner: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        line = _key_line(text, table_line, key)
        raise ConfigError(
            f"{_where(path, line)}: {owner}: field '{key}' must be a non-negative integer, got {value!r}"
        )
    return value


def load_clients_file(path: str | Path) -> list[ClientConfig]:
    """Read and validate ``clients.toml``; raise ConfigError naming the file and line of the first problem."""
    path = Path(path)
    text, data = _read_toml(path, "clients")
    plans: dict[str, Quotas] = {}
    raw_plans = data.pop("plans", {})
    if not isinstance(raw_plans, dict):
        raise ConfigError(
            f"{_where(path, _key_line(text, 0, 'plans'))}: 'plans' must be a table of plan tables"
        )
    for plan, body in raw_plans.items():
        line = _header_line(text, plan, "plans")
        if not isinstance(body, dict):
            raise ConfigError(f"{_where(path, line)}: plan '{plan}' must be a table")
        unknown = sorted(set(body) - set(QUOTA_KEYS))
        if unknown:
            raise ConfigError(
                f"{_where(path, _key_line(text, line, unknown[0]))}: plan '{plan}': "
                f"unknown field '{unknown[0]}' "
                f"(allowed: {', '.join(QUOTA_KEYS)})"
            )
        plans[plan] = Quotas(
            **{k: _quota_value(path, text, line, f"plan '{plan}'", k, v) for k, v in body.items()}
        )

    clients: list[ClientConfig] = []
    seen: dict[str, str] = {}
    for name, body in data.items():
        line, token = _entry_token(path, text, "client", name, body)
        plan = body.get("plan", "default")
        if not isinstance(plan, str) or not plan:
            raise ConfigError(
                f"{_where(path, _key_line(text, line, 'plan'))}: client '{name}': field 'plan' must "
                f"be a non-empty string"
            )
        admin = body.get("admin", False)
        if not isinstance(admin, bool):
            raise ConfigError(
                f"{_where(path, _key_line(text, line, 'admin'))}: client '{name}': field 'admin' "
                f"must be true or false"
            )
        base = plans.get(plan, Quotas())
        own = {
            k: _quota_value(path, text, line, f"client '{name}'", k, body[k]) for k in QUOTA_KEYS if k in body
        }
        quotas = Quotas(**{k: own.get(k, getattr(base, k)) for k in QUOTA_KEYS})
        digest = hash_token(token)
        if digest in seen:
            raise ConfigError(
                f"{_where(path, _key_line(text, line, 'token'))}: client '{name}' has the same token as "
                f"client '{seen[digest]}'"
            )
        seen[digest] = name
        params = {k: v for k, v in body.items() if k not in _RESERVED_CLIENT_KEYS}
        clients.append(ClientConfig(name, digest, plan, quotas, admin, params))
    return clients


def load_workers_file(path: str | Path) -> dict[str, str]:
    """Read and validate ``workers.toml``; return ``{worker_id: sha256(token)}``."""
    path = Path(path)
    text, data = _read_toml(path, "workers")
    out: dict[str, str] = {}
    for worker_id, body in data.items():
        _, token = _entry_token(path, text, "worker", worker_id, body)
        out[worker_id] = hash_token(token)
    return out


def _entry_token(path: Path, text: str, kind: str, name: str, body: Any) -> tuple[int | None, str]:
    """Check that ``[name]`` in a clients/workers file is a table with a non-empty token; return its
    header line and the token, or raise ConfigError naming the file, the line and the field."""
    line = _header_line(text, name)
    if not isinstance(body, dict):
        raise ConfigError(
            f"{_where(path, _key_line(text, 0, name))}: {kind} '{name}' must be a table like [{name}] "
            f"with a token"
        )
    token = body.get("token")
    if not isinstance(token, str) or not token.strip():
        where = _key_line(text, line, "token") if "token" in body else line
        raise ConfigError(
            f"{_where(path, where)}: {kind} '{name}': field 'token' is required and must be a "
            f"non-empty string"
        )
    return line, token


class ClientRegistry:
    """The API clients, looked up by token in constant time per comparison."""

    def __init__(self, clients: list[ClientConfig] | None = None) -> None:
        self._by_hash = {c.token_hash: c for c in clients or []}
        self.admin_restricted = any(c.admin for c in self._by_hash.values())

    @classmethod
    def from_settings(cls, *, client_token: str | None, clients_config_path: Path | None) -> ClientRegistry:
        clients = load_clients_file(clients_config_path) if clients_config_path is not None else []
        if client_token:
            clients.append(ClientConfig("default", hash_token(client_token), "default"))
        return cls(clients)

    def __len__(self) -> int:
        return len(self._by_hash)

    def authenticate(self, token: str | None) -> ClientConfig | None:
        """The client owning ``token``, or ``None``."""
        if not token:
            return None
        digest = hash_token(token)
        client = self._by_hash.get(digest)
        if client is not None and hmac.compare_digest(client.token_hash, digest):
            return client
        return None

    def may_administer(self, client: ClientConfig) -> bool:
        return client.admin or not self.admin_restricted


class WorkerTokens:
    """Worker credentials: one per worker from ``workers.toml`` (hashed), else ``GLOBAL_WORKER_TOKEN``.

    A worker listed in ``workers.toml`` must use its own token; the global token is for the others.
    :meth:`reload` re-reads the file and swaps the table atomically (the old one stays if the file is bad).
    """

    def __init__(self, *, global_token: str | None = None, path: Path | None = None) -> None:
        self._global_hash = hash_token(global_token) if global_token else None
        self.path = path
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = load_workers_file(path) if path is not None else {}

    @property
    def configured(self) -> bool:
        return self._global_hash is not None or bool(self._tokens)

    def reload(self) -> int:
        """Re-read ``workers.toml``; return how many workers it lists. ConfigError leaves the old table."""
        if self.path is None:
            return 0
        tokens = load_workers_file(self.path)
        with self._lock:
            self._tokens = tokens
        return len(tokens)

    def secret_known(self, worker_id: str) -> bool:
        return worker_id in self._tokens or self._global_hash is not None

    def verify(self, worker_id: str | None, token: str | None) -> bool:
        """Whether ``token`` authenticates ``worker_id`` (constant-time comparison of digests)."""
        if not token:
            return False
        digest = hash_token(token)
        own = self._tokens.get(worker_id) if worker_id else None
        if own is not None:
            return hmac.compare_digest(own, digest)
        if self._global_hash is not None:
            return hmac.compare_digest(self._global_hash, digest)
        return False
