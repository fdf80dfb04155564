"""Resources: the models (from :mod:`podium.wire.workcell`) and :class:`ResourceTable`, which changes them.

Resources live in a flat table: each has an optional ``parent_id`` and a ``key`` giving its place in the
parent (``"0"``, ``"1"``... for slots, stacks and queues; ``"A1"`` style for grids). Every operation on a
:class:`ResourceTable` validates first and then changes the table, returning the resources it changed so
the engine can persist them in the same store transaction as the step that caused them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from podium.errors import InvalidInputError
from podium.ids import new_ulid_str
from podium.wire.workcell import (
    CONSUMABLE_TYPES,
    CONTAINER_TYPES,
    LOCATION_CONTAINER_TEMPLATE,
    Resource,
    ResourceDefinition,
    ResourceTemplate,
    ResourceType,
)
from podium.workcell.errors import WorkflowNotFoundError

__all__ = [
    "CONSUMABLE_TYPES",
    "CONTAINER_TYPES",
    "LOCATION_CONTAINER_TEMPLATE",
    "Resource",
    "ResourceDefinition",
    "ResourceError",
    "ResourceTable",
    "ResourceTemplate",
    "ResourceType",
]

_ORDERED = frozenset({ResourceType.SLOT, ResourceType.STACK, ResourceType.QUEUE})
_GRID_KEY = re.compile(r"^([A-Za-z])(\d+)$")


class ResourceError(InvalidInputError):
    """A resource operation that cannot be done (full container, negative quantity, ...)."""


class ResourceTable:
    """The workcell's resources, in memory; see the module docstring."""

    def __init__(self, resources: Iterable[Resource] = ()) -> None:
        self._by_id: dict[str, Resource] = {r.resource_id: r for r in resources}

    # --- loading and undo ------------------------------------------------------------------------

    def load(self, resource: Resource) -> None:
        """Put a stored resource back as it was (start-up loading: no parent or capacity checks, since its
        parent may come later in the listing)."""
        self._by_id[resource.resource_id] = resource

    def snapshot(self) -> dict[str, Resource]:
        """The table's entries now, for :meth:`restore` if a change is refused."""
        return dict(self._by_id)

    def restore(self, snapshot: dict[str, Resource]) -> None:
        """Put the entries of a :meth:`snapshot` back."""
        self._by_id = dict(snapshot)

    # --- reading --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_id)

    def all(self) -> list[Resource]:
        """Every resource, by id."""
        return sorted(self._by_id.values(), key=lambda r: r.resource_id)

    def get(self, resource_id: str) -> Resource:
        """The resource with that id; :class:`WorkflowNotFoundError` if none."""
        try:
            return self._by_id[resource_id]
        except KeyError:
            raise WorkflowNotFoundError(f"no resource {resource_id!r}") from None

    def find(self, ref: str) -> Resource | None:
        """A resource by id, or else by unique name."""
        if ref in self._by_id:
            return self._by_id[ref]
        named = [r for r in self._by_id.values() if r.resource_name == ref]
        return named[0] if len(named) == 1 else None

    def query(
        self,
        *,
        resource_name: str | None = None,
        resource_class: str | None = None,
        base_type: str | None = None,
        parent_id: str | None = None,
    ) -> list[Resource]:
        """Resources matching every given field."""
        out = []
        for r in self.all():
            if resource_name is not None and r.resource_name != resource_name:
                continue
            if resource_class is not None and r.resource_class != resource_class:
                continue
            if base_type is not None and r.base_type != base_type:
                continue
            if parent_id is not None and r.parent_id != parent_id:
                continue
            out.append(r)
        return out

    def children(self, container_id: str) -> list[Resource]:
        """The children of a container in key order (numeric keys numerically)."""
        kids = [r for r in self._by_id.values() if r.parent_id == container_id]
        return sorted(kids, key=lambda r: _key_order(r.key))

    def child_at(self, container_id: str, key: str | int | None) -> Resource | None:
        """The child at ``key``; for slots, stacks and queues key ``0``/``None`` means "any child"."""
        container = self.get(container_id)
        kids = self.children(container_id)
        if key is None or (container.base_type in _ORDERED and str(key) == "0"):
            return kids[0] if kids else None
        wanted = _normalise_key(container, key)
        return next((k for k in kids if k.key == wanted), None)

    def tree(self, resource_id: str) -> dict[str, Any]:
        """A resource with its children nested (as JSON)."""
        doc = self.get(resource_id).to_json()
        doc["children"] = [self.tree(c.resource_id) for c in self.children(resource_id)]
        return doc

    # --- changing -------------------------------------------------------------------------------

    def create(
        self,
        definition: ResourceDefinition,
        *,
        parent_id: str | None = None,
        key: str | None = None,
        now: datetime | None = None,
        resource_id: str | None = None,
    ) -> list[Resource]:
        """Create a resource (and its children) from a definition; return every resource created."""
        if parent_id is not None:
            parent = self.get(parent_id)
            key = self._free_key(parent, key)
        res = Resource(
            resource_id=resource_id or new_ulid_str(),
            resource_name=definition.resource_name,
            resource_class=definition.resource_class,
            base_type=definition.base_type,
            resource_description=definition.resource_description,
            parent_id=parent_id,
            key=key,
            quantity=definition.quantity,
            capacity=definition.capacity,
            unit=definition.unit,
            rows=definition.rows,
            columns=definition.columns,
            attributes=dict(definition.attributes),
            created_at=now,
            updated_at=now,
        )
        self._by_id[res.resource_id] = res
        created = [res]
        kids = definition.children
        items = kids.items() if isinstance(kids, dict) else ((None, c) for c in kids)
        for child_key, child in items:
            created += self.create(child, parent_id=res.resource_id, key=child_key, now=now)
        return created

    def add(self, resource: Resource) -> list[Resource]:
        """Insert or replace a resource as given (after checking its parent exists)."""
        if resource.parent_id is not None:
            self.get(resource.parent_id)
        self._by_id[resource.resource_id] = resource
        return [resource]

    def remove(self, resource_id: str) -> list[Resource]:
        """Mark a resource removed and take it out of its container."""
        res = self.get(resource_id).model_copy(update={"removed": True, "parent_id": None, "key": None})
        self._by_id[resource_id] = res
        return [res]

    def push(self, container_id: str, resource_id: str, *, key: str | None = None) -> list[Resource]:
        """Put a resource into a container (top of a stack, back of a queue, a slot, or a grid cell)."""
        container = self.get(container_id)
        if not container.is_container:
            raise ResourceError(f"{container.resource_name} is not a container", field="container")
        res = self.get(resource_id)
        if res.resource_id == container_id or self._is_ancestor(res.resource_id, container_id):
            raise ResourceError(f"cannot put {res.resource_name} inside itself", field="resource")
        new_key = self._free_key(container, key)
        moved = res.model_copy(update={"parent_id": container_id, "key": new_key})
        self._by_id[resource_id] = moved
        return [moved]

    def pop(self, container_id: str, *, key: str | None = None) -> tuple[Resource, list[Resource]]:
        """Take a resource out of a container (top of a stack, front of a queue, the slot's content, or
        the child at ``key``); return it (now without a parent) and the changed resources."""
        container = self.get(container_id)
        kids = self.children(container_id)
        if not kids:
            raise ResourceError(f"{container.resource_name} is empty", field="container")
        if key is not None and container.base_type not in _ORDERED:
            wanted = _normalise_key(container, key)
            target = next((k for k in kids if k.key == wanted), None)
            if target is None:
                raise ResourceError(f"{container.resource_name} has nothing at {key}", field="key")
        elif container.base_type == ResourceType.QUEUE:
            target = kids[0]
        else:
            target = kids[-1]
        out = target.model_copy(update={"parent_id": None, "key": None})
        self._by_id[target.resource_id] = out
        changed = [out]
        if container.base_type == ResourceType.QUEUE:
            for i, k in enumerate(self.children(container_id)):
                if k.key != str(i):
                    upd = k.model_copy(update={"key": str(i)})
                    self._by_id[k.resource_id] = upd
                    changed.append(upd)
        return out, changed

    def move(self, source_id: str, target_id: str, *, key: str | None = None) -> list[Resource]:
        """Pop from one container and push into another, all or nothing."""
        target = self.get(target_id)
        self._free_key(target, key)  # validate before touching anything
        res, changed = self.pop(source_id)
        try:
            changed += self.push(target_id, res.resource_id, key=key)
        except ResourceError:
            self.push(source_id, res.resource_id)
            raise
        return _dedupe(changed)

    def change_quantity(self, resource_id: str, delta: float) -> list[Resource]:
        """Add ``delta`` to a consumable's quantity, kept within ``[0, capacity]``."""
        res = self.get(resource_id)
        if res.quantity is None:
            raise ResourceError(f"{res.resource_name} has no quantity", field="quantity")
        new = res.quantity + delta
        if new < 0:
            raise ResourceError(
                f"{res.resource_name} has {res.quantity} {res.unit or ''}, cannot take {-delta}".replace(
                    "  ", " "
                ),
                field="quantity",
            )
        if res.capacity is not None and new > res.capacity:
            raise ResourceError(
                f"{res.resource_name} would exceed its capacity {res.capacity}", field="quantity"
            )
        if res.base_type == ResourceType.DISCRETE_CONSUMABLE and new != int(new):
            raise ResourceError(f"{res.resource_name} is counted in whole units", field="quantity")
        upd = res.model_copy(update={"quantity": new})
        self._by_id[resource_id] = upd
        return [upd]

    def set_attribute(self, resource_id: str, field: str, value: Any) -> list[Resource]:
        """Set one attribute of a resource."""
        res = self.get(resource_id)
        upd = res.model_copy(update={"attributes": {**res.attributes, field: value}})
        self._by_id[resource_id] = upd
        return [upd]

    # --- helpers --------------------------------------------------------------------------------

    def _is_ancestor(self, ancestor_id: str, resource_id: str) -> bool:
        seen = set()
        cur = self._by_id.get(resource_id)
        while cur is not None and cur.parent_id is not None and cur.parent_id not in seen:
            if cur.parent_id == ancestor_id:
                return True
            seen.add(cur.parent_id)
            cur = self._by_id.get(cur.parent_id)
        return False

    def _free_key(self, container: Resource, key: str | int | None) -> str:
        kids = self.children(container.resource_id)
        if container.capacity is not None and len(kids) >= container.capacity:
            raise ResourceError(f"{container.resource_name} is full", field="container")
        if container.base_type in _ORDERED or key is None:
            # Ordered containers choose the position themselves: the next index.
            used = {k.key for k in kids}
            i = len(kids)
            while str(i) in used:
                i += 1
            return str(i)
        wanted = _normalise_key(container, key)
        if any(k.key == wanted for k in kids):
            raise ResourceError(f"{container.resource_name} already holds something at {key}", field="key")
        return wanted


def _normalise_key(container: Resource, key: str | int) -> str:
    text = str(key).strip()
    if container.base_type == ResourceType.GRID:
        m = _GRID_KEY.match(text)
        if m is None:
            raise ResourceError(f"grid key {key!r} is not like 'A1'", field="key")
        row, col = ord(m.group(1).upper()) - ord("A"), int(m.group(2))
        if container.rows is not None and row >= container.rows:
            raise ResourceError(
                f"{container.resource_name} has {container.rows} rows, not {text}", field="key"
            )
        if container.columns is not None and not 1 <= col <= container.columns:
            raise ResourceError(f"{container.resource_name} has {container.columns} columns", field="key")
        return f"{m.group(1).upper()}{col}"
    return text


def _key_order(key: str | None) -> tuple[int, int, str]:
    if key is None:
        return (2, 0, "")
    if key.isdigit():
        return (0, int(key), "")
    m = _GRID_KEY.match(key)
    if m is not None:
        return (1, int(m.group(2)) + 1000 * (ord(m.group(1).upper()) - ord("A")), key)
    return (1, 0, key)


def _dedupe(resources: list[Resource]) -> list[Resource]:
    out: dict[str, Resource] = {}
    for r in resources:
        out[r.resource_id] = r
    return list(out.values())
