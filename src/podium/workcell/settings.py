"""Settings of the workcell manager (``WORKCELL_*`` variables and the settings files)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import SettingsConfigDict

from podium.settings import PodiumSettings

__all__ = ["DEFAULT_SCHEDULER", "WorkcellManagerSettings"]

DEFAULT_SCHEDULER = "podium.workcell.scheduler"


class WorkcellManagerSettings(PodiumSettings):
    """Everything the workcell manager reads at start-up.

    Sources, highest first: arguments, ``WORKCELL_*`` variables, then ``workcell.env``/``.env``,
    ``workcell.settings.toml``/``settings.toml``, ``workcell.settings.yaml``/``settings.yaml``,
    ``workcell.settings.json``/``settings.json`` in the settings directory.
    """

    model_config = SettingsConfigDict(env_prefix="WORKCELL_", extra="ignore", validate_default=True)
    component: ClassVar[str] = "workcell"

    server_url: str = "http://localhost:8005"
    manager_name: str = Field(
        default="podium workcell", validation_alias=AliasChoices("manager_name", "name")
    )
    nodes: dict[str, str] = Field(default_factory=dict)
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

    @model_validator(mode="after")
    def _intervals(self) -> WorkcellManagerSettings:
        if self.node_update_interval > self.scheduler_update_interval * 10:
            raise ValueError("node_update_interval should not exceed ten scheduler intervals")
        return self

    def resolved_store_url(self) -> str:
        """The store URL: ``store_url`` if given, else a SQLite file in the data folder."""
        return self.store_url or f"sqlite:///{self.data_dir / 'workcell.db'}"
