"""Resources as data: assets, consumables with quantities, and containers (slots, stacks, queues, grids,
pools). Each resource has an optional ``parent_id`` and a ``key`` giving its place in the parent."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AliasChoices, Field, model_validator

from podium.ids import new_ulid_str
from podium.wire.workcell._base import InputModel, WorkcellModel

__all__ = [
    "CONSUMABLE_TYPES",
    "CONTAINER_TYPES",
    "Resource",
    "ResourceDefinition",
    "ResourceType",
]


class ResourceType(StrEnum):
    """The base types MADSci knows (the subset podium models)."""

    RESOURCE = "resource"
    ASSET = "asset"
    CONSUMABLE = "consumable"
    DISCRETE_CONSUMABLE = "discrete_consumable"
    CONTINUOUS_CONSUMABLE = "continuous_consumable"
    CONTAINER = "container"
    COLLECTION = "collection"
    SLOT = "slot"
    STACK = "stack"
    QUEUE = "queue"
    ROW = "row"
    GRID = "grid"
    POOL = "pool"


CONTAINER_TYPES = frozenset(
    {
        ResourceType.CONTAINER,
        ResourceType.COLLECTION,
        ResourceType.SLOT,
        ResourceType.STACK,
        ResourceType.QUEUE,
        ResourceType.ROW,
        ResourceType.GRID,
        ResourceType.POOL,
    }
)
CONSUMABLE_TYPES = frozenset(
    {ResourceType.CONSUMABLE, ResourceType.DISCRETE_CONSUMABLE, ResourceType.CONTINUOUS_CONSUMABLE}
)


class ResourceDefinition(InputModel):
    """A resource to create, with its children for containers."""

    resource_name: str = Field(validation_alias=AliasChoices("resource_name", "name"))
    resource_class: str = ""
    base_type: ResourceType = Field(
        default=ResourceType.ASSET, validation_alias=AliasChoices("base_type", "resource_type", "type")
    )
    resource_description: str | None = Field(
        default=None, validation_alias=AliasChoices("resource_description", "description")
    )
    quantity: float | None = None
    capacity: float | None = None
    unit: str | None = None
    rows: int | None = None
    columns: int | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    children: list[ResourceDefinition] | dict[str, ResourceDefinition] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> ResourceDefinition:
        if self.base_type == ResourceType.SLOT:
            self.capacity = 1 if self.capacity is None else self.capacity
            if self.capacity != 1:
                raise ValueError("a slot holds exactly one resource (capacity 1)")
        if self.children and self.base_type not in CONTAINER_TYPES:
            raise ValueError(f"{self.resource_name}: only containers have children, not {self.base_type}")
        if self.base_type in CONSUMABLE_TYPES and self.quantity is None:
            self.quantity = 0
        return self


class Resource(WorkcellModel):
    """One resource as stored and served."""

    resource_id: str = Field(default_factory=new_ulid_str)
    resource_name: str
    resource_class: str = ""
    base_type: ResourceType = ResourceType.ASSET
    resource_description: str | None = None
    parent_id: str | None = None
    key: str | None = None
    quantity: float | None = None
    capacity: float | None = None
    unit: str | None = None
    rows: int | None = None
    columns: int | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    removed: bool = False

    @property
    def is_container(self) -> bool:
        """Whether the resource can hold others."""
        return self.base_type in CONTAINER_TYPES
