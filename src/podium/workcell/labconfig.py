"""A MADSci 0.8 lab's own configuration as a podium workcell: ``settings.yaml`` and the environment.

MADSci 0.8 keeps a lab in one shared ``settings.yaml`` (plus ``.env``) that every manager reads with its own
prefix. podium reads the keys that describe the workcell, under the same names and with the same
environment variables:

- workcell manager (``WORKCELL_*``, :class:`~podium.workcell.WorkcellManagerSettings`): ``workcell_nodes``
  (node name -> URL), ``workcell_manager_name``, ``workcell_manager_description``, the intervals ...;
- location manager (``LOCATION_*``, :class:`LocationSettings`): ``location_locations`` (each with its
  ``representations`` and ``resource_template_name``/``resource_template_overrides``),
  ``location_transfer_capabilities``;
- resource manager (``RESOURCE_*``, :class:`ResourceSettings`): ``resource_default_templates``, the
  templates locations' resources are made from.

Everything else in the file (other managers, database URLs, OpenTelemetry) is left alone.
``podium workcell serve --settings settings.yaml`` uses :func:`lab_workcell`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import SettingsConfigDict

from podium.errors import ConfigError
from podium.settings import PodiumSettings
from podium.workcell.settings import WorkcellManagerSettings
from podium.workcell.workcell import WorkcellDefinition

__all__ = ["LocationSettings", "ResourceSettings", "lab_workcell"]


class LocationSettings(PodiumSettings):
    """The location manager's part of a MADSci lab's settings (``LOCATION_*``; ``location_*`` keys)."""

    model_config = SettingsConfigDict(env_prefix="LOCATION_", extra="ignore", validate_default=True)
    component: ClassVar[str] = "location"

    locations: list[dict[str, Any]] = Field(default_factory=list)
    transfer_capabilities: dict[str, Any] | None = None


class ResourceSettings(PodiumSettings):
    """The resource manager's templates from a MADSci lab's settings (``RESOURCE_*``; ``resource_*`` keys)."""

    model_config = SettingsConfigDict(env_prefix="RESOURCE_", extra="ignore", validate_default=True)
    component: ClassVar[str] = "resource"

    default_templates: list[dict[str, Any]] = Field(
        default_factory=list, validation_alias=AliasChoices("default_templates", "resource_default_templates")
    )


def lab_workcell(
    settings: WorkcellManagerSettings,
    *,
    settings_dir: str | Path | None = None,
    settings_file: str | Path | None = None,
) -> WorkcellDefinition:
    """The workcell a MADSci lab's settings describe: its nodes (from ``settings``), locations, transfer
    capabilities and resource templates (read from the same sources). ConfigError naming the source and
    field when they do not make a workcell."""
    where = str(settings_file or Path(settings_dir or ".") / "settings.yaml")
    locations = LocationSettings.load(settings_dir=settings_dir, settings_file=settings_file)
    resources = ResourceSettings.load(settings_dir=settings_dir, settings_file=settings_file)
    try:
        workcell = WorkcellDefinition.model_validate(
            {
                "name": settings.manager_name,
                "description": settings.manager_description,
                "nodes": dict(settings.nodes),
                "locations": locations.locations,
                "transfer_capabilities": locations.transfer_capabilities,
                "resource_templates": resources.default_templates,
            }
        )
    except ValidationError as exc:
        names = {"locations": "location_locations", "transfer_capabilities": "location_transfer_capabilities"}
        names["resource_templates"] = "resource_default_templates"
        msgs = []
        for err in exc.errors():
            loc = [str(x) for x in err["loc"]]
            msg = str(err["msg"]).removeprefix("Value error, ")
            if loc:
                loc[0] = names.get(loc[0], loc[0])
                msgs.append(f"field '{'.'.join(loc)}': {msg}")
            else:  # a check over the whole workcell names its field in the message
                msgs.append(f"field {names['locations']}{msg.removeprefix('locations')}")
        raise ConfigError(f"{where}: {'; '.join(msgs)}") from None
    location_names = [loc.location_name for loc in workcell.locations]
    dupes = sorted({n for n in location_names if location_names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{where}: field 'location_locations': location names must be unique ({dupes})")
    return workcell
