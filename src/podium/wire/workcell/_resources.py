"""Resources as data: assets, consumables with quantities, and containers (slots, stacks, queues, grids,
pools). Each resource has an optional ``parent_id`` and a ``key`` giving its place in the parent."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AliasChoices, Field, ValidationError, model_validator

from podium.ids import new_ulid_str
from podium.wire.workcell._base import InputModel, WorkcellModel

__all__ = [
    "CONSUMABLE_TYPES",
    "CONTAINER_TYPES",
    "LOCATION_CONTAINER_TEMPLATE",
    "Resource",
    "ResourceDefinition",
    "ResourceTemplate",
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


class ResourceTemplate(WorkcellModel):
    """A named resource blueprint, as MADSci's resource manager keeps them (``resource_default_templates``
    in a MADSci ``settings.yaml``). A location names one in ``resource_template_name``; its container
    resource is made from ``base_resource`` with the location's ``resource_template_overrides`` on top,
    named after the location (what MADSci's location manager asks the resource manager for)."""

    template_name: str
    description: str | None = None
    base_resource: dict[str, Any] = Field(default_factory=dict)
    required_overrides: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    version: str | None = None

    def make(self, resource_name: str, overrides: dict[str, Any] | None = None) -> ResourceDefinition:
        """The resource this template makes under ``resource_name``; ValueError naming the field if the
        template and overrides do not make a valid resource."""
        fields = _resource_fields(self.base_resource)
        fields.update(_resource_fields(overrides or {}))
        fields.setdefault("resource_name", resource_name)
        if "resource_name" not in (overrides or {}):
            fields["resource_name"] = resource_name
        try:
            return ResourceDefinition.model_validate(fields)
        except ValidationError as exc:
            msgs = "; ".join(
                f"{'.'.join(str(x) for x in e['loc']) or 'resource'}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(f"template {self.template_name!r}: {msgs}") from None


LOCATION_CONTAINER_TEMPLATE = ResourceTemplate(
    template_name="location_container",
    description="Default container resource for a lab location. Holds a single discrete item (e.g. a plate).",
    base_resource={
        "resource_name": "location_container",
        "resource_class": "LocationContainer",
        "base_type": "slot",
        "capacity": 1,
        "attributes": {"slot_type": "location_container"},
    },
    required_overrides=["resource_name"],
    tags=["location", "container", "slot"],
    version="1.0.0",
)
"""The template MADSci's location manager registers for every lab (a one-place slot)."""

_TEMPLATE_KEYS = {"resource_name", "resource_class", "resource_description", "quantity", "capacity", "unit"}
_TEMPLATE_KEYS |= {"rows", "columns", "attributes"}


def _resource_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """The fields of a MADSci resource (template base or overrides) that make a podium resource."""
    out: dict[str, Any] = {k: v for k, v in raw.items() if k in _TEMPLATE_KEYS and v is not None}
    attributes = {**(raw.get("custom_attributes") or {}), **(raw.get("attributes") or {})}
    if attributes:
        out["attributes"] = attributes
    kind = raw.get("base_type") or raw.get("resource_type")
    if kind is not None:
        kind = str(getattr(kind, "value", kind)).lower()
        # MADSci base types podium does not model (voxel grids, ...) hold things: a container.
        out["base_type"] = kind if kind in ResourceType._value2member_map_ else ResourceType.CONTAINER.value
    return out
