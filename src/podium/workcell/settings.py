"""Settings of the workcell manager (``WORKCELL_*`` variables and the settings files)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from podium.blobs import S3Settings
from podium.settings import PodiumSettings
from podium.tokens import TokenSet, hash_token, node_entry_url

__all__ = ["DEFAULT_SCHEDULER", "TOKEN_FILE_NAME", "WorkcellManagerSettings"]

DEFAULT_SCHEDULER = "podium.workcell.scheduler"
TOKEN_FILE_NAME = "workcell.token"
"""The file in ``data_dir`` where ``podium workcell serve`` keeps the token it generated."""


class WorkcellManagerSettings(PodiumSettings):
    """Everything the workcell manager reads at start-up.

    Sources, highest first: arguments, ``WORKCELL_*`` variables, then ``workcell.env``/``.env``,
    ``workcell.settings.toml``/``settings.toml``, ``workcell.settings.yaml``/``settings.yaml``,
    ``workcell.settings.json``/``settings.json`` in the settings directory.

    API tokens: ``api_tokens`` (``WORKCELL_API_TOKENS``, comma-separated or a JSON list) are hashed as the
    settings are built and only their digests kept (in ``api_token_hashes``, which may also be given
    directly). A node in ``nodes`` is a URL (``http://podium:<token>@host:port`` when it needs a token) or
    a mapping ``{url, token}``.
    """

    model_config = SettingsConfigDict(env_prefix="WORKCELL_", extra="ignore", validate_default=True)
    component: ClassVar[str] = "workcell"

    server_url: str = "http://localhost:8005"
    manager_name: str = "podium workcell"
    manager_description: str | None = None
    nodes: dict[str, str] = Field(default_factory=dict)
    api_tokens: Annotated[list[str], NoDecode] = Field(default_factory=list, repr=False)
    api_token_hashes: Annotated[list[str], NoDecode] = Field(default_factory=list, repr=False)
    scheduler: str = DEFAULT_SCHEDULER
    scheduler_update_interval: float = Field(default=5.0, gt=0)
    node_update_interval: float = Field(default=2.0, gt=0)
    node_info_update_interval: float = Field(default=30.0, gt=0)
    node_disconnect_after_failures: int = Field(default=2, ge=1)
    owner_lock_ttl_s: float = Field(default=15.0, gt=0)
    cold_start_delay: float = Field(default=0.0, ge=0)
    get_action_result_retries: int = Field(default=3, ge=0)
    workcells_directory: Path = Path("podium-data/workcells")
    data_dir: Path = Path("podium-data")
    store_url: str | None = None
    workcell_file: Path | None = None
    data_server_url: str | None = None
    action_timeout_s: float | None = Field(default=None, gt=0)

    s3_endpoint_url: str | None = None
    """S3-compatible storage for file datapoints (``WORKCELL_S3_ENDPOINT_URL``, with ``WORKCELL_S3_ACCESS_KEY``,
    ``WORKCELL_S3_SECRET_KEY``, ``WORKCELL_S3_BUCKET``, ``WORKCELL_S3_REGION``; extra ``s3``): each file datapoint
    (step outputs, workflow file inputs) is copied there after it is recorded, and read back from there when its
    local file is gone (:mod:`podium.workcell.datapoints`)."""
    s3_access_key: str | None = Field(default=None, repr=False)
    s3_secret_key: str | None = Field(default=None, repr=False)
    s3_bucket: str = "podium-datapoints"
    s3_region: str = "us-east-1"

    @model_validator(mode="before")
    @classmethod
    def _name_alias(cls, data: Any) -> Any:
        # ``name`` is another spelling of ``manager_name`` (not an alias: an alias would make pydantic-settings
        # read the bare ``NAME``/``MANAGER_NAME`` variables instead of ``WORKCELL_MANAGER_NAME``).
        if isinstance(data, dict) and "name" in data:
            data = dict(data)
            name = data.pop("name")
            data["manager_name"] = name  # only arguments say `name`: they beat every other source
        return data

    @field_validator("api_tokens", "api_token_hashes", mode="before")
    @classmethod
    def _token_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [t.strip() for t in text.split(",") if t.strip()]
        return value

    @field_validator("nodes", mode="before")
    @classmethod
    def _node_entries(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {name: node_entry_url(entry) for name, entry in value.items()}
        return value

    @model_validator(mode="after")
    def _hash_tokens(self) -> WorkcellManagerSettings:
        # Keep only digests: the plain tokens do not stay in memory with the settings.
        hashes = [*self.api_token_hashes, *(hash_token(t) for t in self.api_tokens)]
        object.__setattr__(self, "api_token_hashes", list(dict.fromkeys(hashes)))
        object.__setattr__(self, "api_tokens", [])
        return self

    @model_validator(mode="after")
    def _s3_complete(self) -> WorkcellManagerSettings:
        given = [self.s3_endpoint_url, self.s3_access_key, self.s3_secret_key]
        if any(given) and not all(given):
            missing = [
                n
                for n, v in zip(("s3_endpoint_url", "s3_access_key", "s3_secret_key"), given, strict=True)
                if not v
            ]
            raise ValueError(f"S3 datapoint storage needs {', '.join(missing)} too")
        if self.s3_endpoint_url and not self.s3_endpoint_url.startswith(("http://", "https://")):
            raise ValueError(f"s3_endpoint_url {self.s3_endpoint_url!r}: expected an http(s):// URL")
        return self

    def s3_settings(self) -> S3Settings | None:
        """Where file datapoints are copied (:class:`podium.blobs.S3Settings`), or ``None`` when no S3 is set."""
        if not (self.s3_endpoint_url and self.s3_access_key and self.s3_secret_key):
            return None
        return S3Settings(
            endpoint_url=self.s3_endpoint_url,
            access_key=self.s3_access_key,
            secret_key=self.s3_secret_key,
            bucket=self.s3_bucket,
            region=self.s3_region,
        )

    def api_token_set(self) -> TokenSet:
        """The tokens that open the workcell API (digests only)."""
        return TokenSet(self.api_token_hashes)

    @property
    def token_file(self) -> Path:
        """Where ``podium workcell serve`` keeps a generated token: ``<data_dir>/workcell.token``."""
        return self.data_dir / TOKEN_FILE_NAME

    @model_validator(mode="after")
    def _intervals(self) -> WorkcellManagerSettings:
        if self.node_update_interval > self.scheduler_update_interval * 10:
            raise ValueError("node_update_interval should not exceed ten scheduler intervals")
        return self

    def resolved_store_url(self) -> str:
        """The store URL: ``store_url`` if given, else a SQLite file in the data folder."""
        return self.store_url or f"sqlite:///{self.data_dir / 'podium.db'}"
