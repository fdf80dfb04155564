"""The workcell file's model and what the workcell serves about itself (info, status, nodes, state).

A workcell file, in the shape MADSci users keep::

    name: my_workcell
    nodes: {liquidhandler_1: http://localhost:2000, ...}
    locations:
      - location_name: deck_1
        representations: {liquidhandler_1: 1, robotarm_1: [0, 0, 0]}   # or `reference` (0.7)
        resource_definition: {resource_name: deck_1_slot, base_type: slot}
    transfer_capabilities:       # what moves plates (MADSci's location manager setting)
      transfer_templates: [{node_name: robotarm_1, action: transfer, source_argument_name: source,
                            target_argument_name: target}]
    resources: [...]             # free-standing resources (podium extension)
    settings: {scheduler_update_interval: 1.0, ...}
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import AliasChoices, Field, computed_field, field_validator, model_validator

from podium.ids import new_ulid_str
from podium.tokens import node_entry_url
from podium.wire.workcell._actions import Error
from podium.wire.workcell._base import WorkcellModel
from podium.wire.workcell._locations import LocationDefinition, LocationTransferCapabilities
from podium.wire.workcell._resources import LOCATION_CONTAINER_TEMPLATE, ResourceDefinition, ResourceTemplate

log = logging.getLogger("podium.workcell")

__all__ = [
    "NodeRecord",
    "WorkcellDefinition",
    "WorkcellInfo",
    "WorkcellState",
    "WorkcellStatus",
]


class WorkcellDefinition(WorkcellModel):
    """A workcell as its file declares it."""

    name: str = Field(validation_alias=AliasChoices("name", "workcell_name", "manager_name"))
    manager_id: str = Field(
        default_factory=new_ulid_str, validation_alias=AliasChoices("manager_id", "workcell_id")
    )
    description: str | None = None
    nodes: dict[str, str] = Field(default_factory=dict)
    """Node name -> URL; an entry may also be ``{url, token}`` (kept as ``http://podium:<token>@...``)."""
    locations: list[LocationDefinition] = Field(default_factory=list)
    transfer_capabilities: LocationTransferCapabilities | None = Field(
        default=None,
        validation_alias=AliasChoices("transfer_capabilities", "location_transfer_capabilities"),
    )
    """How ``transfer`` steps are planned; ``location_transfer_capabilities`` is its MADSci settings key."""
    resources: list[ResourceDefinition] = Field(default_factory=list)
    resource_templates: list[ResourceTemplate] = Field(
        default_factory=list,
        validation_alias=AliasChoices(
            "resource_templates", "resource_default_templates", "default_templates"
        ),
    )
    """Templates that locations' ``resource_template_name`` refer to (MADSci's ``resource_default_templates``;
    ``location_container`` is always known)."""
    settings: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _resources_from_templates(self) -> WorkcellDefinition:
        # As MADSci's location manager does at start-up: a location naming a template gets a resource made
        # from it, named after the location. MADSci tolerates a template no one registered yet (a node
        # registers it when it starts); podium has no such later registration, so it makes the location
        # the generic one-place container MADSci would register for it, and says so.
        for index, loc in enumerate(self.locations):
            try:
                loc.resource_definition = self.template_resource(loc)
            except ValueError as exc:
                raise ValueError(f"locations.{index} ({loc.location_name}): {exc}") from None
        return self

    def template_resource(self, loc: LocationDefinition) -> ResourceDefinition | None:
        """The container resource ``loc`` gets: its ``resource_definition``, else one made from its
        ``resource_template_name`` (None without either, or with a ``resource_id``). ValueError naming the
        template when the overrides do not make a valid resource."""
        if loc.resource_template_name is None or loc.resource_id or loc.resource_definition:
            return loc.resource_definition
        templates = {t.template_name: t for t in [LOCATION_CONTAINER_TEMPLATE, *self.resource_templates]}
        template = templates.get(loc.resource_template_name)
        if template is None:
            log.warning(
                "location %s: resource template %r is not defined here; using %r",
                loc.location_name,
                loc.resource_template_name,
                LOCATION_CONTAINER_TEMPLATE.template_name,
            )
            template = LOCATION_CONTAINER_TEMPLATE
        return template.make(loc.location_name, loc.resource_template_overrides)

    @field_validator("nodes", mode="before")
    @classmethod
    def _node_entries(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {name: node_entry_url(entry) for name, entry in value.items()}
        return value


class WorkcellInfo(WorkcellModel):
    """What ``GET /workcell`` answers."""

    name: str
    manager_id: str
    description: str | None = None
    nodes: dict[str, str] = Field(default_factory=dict)


class WorkcellStatus(WorkcellModel):
    """The workcell's own status."""

    paused: bool = False
    errored: bool = False
    errors: list[Error] = Field(default_factory=list)
    initializing: bool = False
    shutdown: bool = False
    locked: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """Nothing stops the workcell from running steps."""
        return not (self.paused or self.errored or self.initializing or self.shutdown or self.locked)


class NodeRecord(WorkcellModel):
    """A node as the workcell knows it: URL plus the last status, info and state it reported (as JSON,
    passed through unchanged so MADSci's ``Node`` model reads them)."""

    node_url: str
    status: dict[str, Any] | None = None
    info: dict[str, Any] | None = None
    state: dict[str, Any] | None = None
    reservation: dict[str, Any] | None = None

    @property
    def ready(self) -> bool:
        """The node said it is ready (and is reachable)."""
        return bool(self.status and self.status.get("ready", False) and not self.status.get("disconnected"))

    @property
    def actions(self) -> dict[str, Any] | None:
        """The node's actions by name, when its info is known."""
        if self.info is None:
            return None
        actions = self.info.get("actions") or {}
        if isinstance(actions, list):
            return {str(a.get("name")): a for a in actions if isinstance(a, dict)}
        return dict(actions)

    @property
    def status_description(self) -> str:
        """Why the node is not ready, as it said."""
        if self.status is None:
            return "status unknown"
        if self.status.get("disconnected"):
            return "disconnected"
        return str(self.status.get("description") or ("ready" if self.ready else "not ready"))


class WorkcellState(WorkcellModel):
    """What ``GET /state`` answers."""

    status: WorkcellStatus = Field(default_factory=WorkcellStatus)
    workflow_queue: list[dict[str, Any]] = Field(default_factory=list)
    workcell_info: WorkcellInfo
    nodes: dict[str, NodeRecord] = Field(default_factory=dict)
