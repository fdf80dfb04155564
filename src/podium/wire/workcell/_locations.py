"""Locations: named places in the workcell, each node knowing it by its own representation.

A :class:`LocationDefinition` carries a ``reference`` (0.7) / ``representations`` (0.8) mapping from node
name to that node's representation (coordinates, a deck slot, a string), and optionally a container
resource attached to the place (``resource_id``, or a ``resource_definition`` created at start-up).
A step's ``locations`` send each node only its own representation, as a :class:`LocationArgument`.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field, model_validator

from podium.ids import new_ulid_str
from podium.wire.workcell._base import InputModel, WorkcellModel
from podium.wire.workcell._resources import ResourceDefinition

__all__ = ["Location", "LocationArgument", "LocationDefinition"]


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
    allow_transfers: bool = True

    @model_validator(mode="after")
    def _one_resource(self) -> LocationDefinition:
        if self.resource_id is not None and self.resource_definition is not None:
            raise ValueError(
                f"location {self.location_name}: give resource_id or resource_definition, not both"
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
