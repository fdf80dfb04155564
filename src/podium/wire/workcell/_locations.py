"""Locations: named places in the workcell, each node knowing it by its own representation.

A :class:`LocationDefinition` carries a ``reference`` (0.7) / ``representations`` (0.8) mapping from node
name to that node's representation (coordinates, a deck slot, a string), and optionally a container
resource attached to the place (``resource_id``, or a ``resource_definition`` created at start-up).
A step's ``locations`` send each node only its own representation, as a :class:`LocationArgument`.

How plates move between locations is MADSci 0.8's location-manager configuration, kept in the workcell
file under the same names: :class:`LocationTransferCapabilities` lists :class:`TransferStepTemplate` s
(a node and the action it moves things with), with per-location overrides and an optional capacity-aware
cost. A location takes part in transfers when ``allow_transfers`` is true.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field, model_validator

from podium.ids import new_ulid_str
from podium.wire.workcell._base import InputModel, WorkcellModel
from podium.wire.workcell._resources import ResourceDefinition

__all__ = [
    "CapacityCostConfig",
    "Location",
    "LocationArgument",
    "LocationDefinition",
    "LocationTransferCapabilities",
    "TransferStepTemplate",
    "TransferTemplateOverrides",
]


class LocationDefinition(InputModel):
    """A location as a workcell file declares it."""

    location_name: str = Field(validation_alias=AliasChoices("location_name", "name"))
    location_id: str = Field(default_factory=new_ulid_str)
    description: str | None = None
    representations: dict[str, Any] = Field(
        default_factory=dict, validation_alias=AliasChoices("representations", "reference", "lookup")
    )
    resource_id: str | None = None
    resource_definition: ResourceDefinition | None = None
    resource_template_name: str | None = None
    """MADSci 0.8: the container resource is made from this template (see ``WorkcellDefinition``)."""
    resource_template_overrides: dict[str, Any] | None = None
    allow_transfers: bool = True
    # MADSci 0.8 Location fields kept for what they say (podium does not act on them).
    location_template_name: str | None = None
    node_bindings: dict[str, str] | None = None
    managed_by: str | None = None
    owner: dict[str, Any] | None = None
    reservation: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_resource(self) -> LocationDefinition:
        if self.resource_id is not None and self.resource_definition is not None:
            raise ValueError(
                f"location {self.location_name}: give resource_id or resource_definition, not both"
            )
        if self.resource_definition is not None and self.resource_template_name is not None:
            raise ValueError(
                f"location {self.location_name}: give resource_definition or resource_template_name, not both"
            )
        return self


class Location(WorkcellModel):
    """A location as served (MADSci 0.8's ``Location``, with the 0.7 ``reference`` mirrored)."""

    location_name: str
    location_id: str
    description: str | None = None
    representations: dict[str, Any] = Field(default_factory=dict)
    resource_id: str | None = None
    allow_transfers: bool = True
    reservation: dict[str, Any] | None = None

    @property
    def reference(self) -> dict[str, Any]:
        """The 0.7 name of ``representations``."""
        return self.representations

    def to_json(self) -> dict[str, Any]:
        doc = super().to_json()
        doc["reference"] = doc["representations"]
        return doc

    def argument_for(self, node: str) -> LocationArgument:
        """What ``node`` receives for this location. KeyError if the node has no representation."""
        return LocationArgument(
            representation=self.representations[node],
            resource_id=self.resource_id,
            location_name=self.location_name,
        )


class LocationArgument(WorkcellModel):
    """A location as one node sees it, sent in a step's action request."""

    representation: Any = Field(validation_alias=AliasChoices("representation", "location"))
    resource_id: str | None = None
    location_name: str | None = None
    reservation: dict[str, Any] | None = None


class TransferStepTemplate(InputModel):
    """A node that can move a plate between any two locations it has a representation for (MADSci's
    ``TransferStepTemplate``): each hop of a transfer becomes a step ``action`` on ``node_name`` with the
    source and target under the given location-argument names."""

    node_name: str
    action: str
    source_argument_name: str = "source_location"
    target_argument_name: str = "target_location"
    cost_weight: float | None = 1.0
    """Weight of one hop in the shortest-path search (``None``: 1.0)."""
    additional_args: dict[str, Any] = Field(default_factory=dict)
    additional_location_args: dict[str, str] = Field(default_factory=dict)
    """More location arguments of the hop: argument name -> location name."""


class TransferTemplateOverrides(InputModel):
    """Templates that replace the defaults for some locations (keys: location name or id). A pair
    override wins over a source override, which wins over a target override."""

    source_overrides: dict[str, list[TransferStepTemplate]] | None = None
    target_overrides: dict[str, list[TransferStepTemplate]] | None = None
    pair_overrides: dict[str, dict[str, list[TransferStepTemplate]]] | None = None


class CapacityCostConfig(InputModel):
    """Make hops into fuller targets cost more (quantity, or number of children, over capacity)."""

    enabled: bool = False
    high_capacity_threshold: float = Field(default=0.8, ge=0.0, le=1.0)
    full_capacity_threshold: float = Field(default=1.0, ge=0.0, le=1.0)
    high_capacity_multiplier: float = Field(default=2.0, ge=1.0)
    full_capacity_multiplier: float = Field(default=10.0, ge=1.0)


class LocationTransferCapabilities(InputModel):
    """What can move plates, and at what cost (MADSci's ``LocationTransferCapabilities``)."""

    transfer_templates: list[TransferStepTemplate] = Field(default_factory=list)
    override_transfer_templates: TransferTemplateOverrides | None = None
    capacity_cost_config: CapacityCostConfig | None = None
