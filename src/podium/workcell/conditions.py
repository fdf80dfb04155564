"""Step conditions: the models (from :mod:`podium.wire.workcell`) and :func:`evaluate`, which checks one
against the workcell's locations and resources for the scheduler.

:func:`evaluate` returns the reasons a condition does not hold (empty when it holds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from podium.wire.workcell import (
    Condition,
    Conditions,
    ExpressionCondition,
    GridKey,
    NoResourceInLocationCondition,
    Operator,
    ParsedExpression,
    ResourceChildFieldCheckCondition,
    ResourceFieldCheckCondition,
    ResourceInLocationCondition,
    parse_expression,
)
from podium.workcell.locations import Location
from podium.workcell.resources import Resource, ResourceTable

__all__ = [
    "Condition",
    "Conditions",
    "ExpressionCondition",
    "NoResourceInLocationCondition",
    "Operator",
    "ParsedExpression",
    "ResourceChildFieldCheckCondition",
    "ResourceFieldCheckCondition",
    "ResourceInLocationCondition",
    "compare",
    "evaluate",
    "field_value",
    "parse_expression",
]


def compare(left: Any, operator: Operator, right: Any) -> bool:
    """``left <operator> right``; values that cannot be ordered compare as False."""
    try:
        if operator == Operator.IS_EQUAL_TO:
            return bool(left == right)
        if operator == Operator.IS_NOT_EQUAL_TO:
            return bool(left != right)
        if operator == Operator.IS_GREATER_THAN:
            return bool(left > right)
        if operator == Operator.IS_LESS_THAN:
            return bool(left < right)
        if operator == Operator.IS_GREQUAL_TO:
            return bool(left >= right)
        return bool(left <= right)
    except TypeError:
        return False


def field_value(resource: Resource, path: Sequence[str]) -> tuple[bool, Any]:
    """Follow a dotted path through a resource (its fields, then ``attributes``); (found, value)."""
    doc: Any = resource.model_dump(mode="json")
    if path and path[0] not in doc and path[0] in resource.attributes:
        doc = resource.attributes
    for part in path:
        if isinstance(doc, Mapping) and part in doc:
            doc = doc[part]
        else:
            return False, None
    return True, doc


def _key(key: GridKey) -> str | int | None:
    if isinstance(key, dict):
        row, col = key.get("row"), key.get("column", key.get("col"))
        if isinstance(row, int) and isinstance(col, int):
            return f"{chr(ord('A') + row)}{col + 1}"
        return None
    return key


def _location(cond: Any, locations: Mapping[str, Location]) -> Location | None:
    if cond.location_id:
        for loc in locations.values():
            if loc.location_id == cond.location_id:
                return loc
    if cond.location_name:
        return locations.get(cond.location_name)
    return None


def _resource(cond: Any, table: ResourceTable) -> Resource | None:
    ref = cond.resource_id or cond.resource_name
    return table.find(ref) if ref else None


def evaluate(condition: Any, *, locations: Mapping[str, Location], resources: ResourceTable) -> list[str]:
    """Why ``condition`` does not hold now (empty list: it holds)."""
    if isinstance(condition, ResourceInLocationCondition | NoResourceInLocationCondition):
        loc = _location(condition, locations)
        name = condition.location_name or condition.location_id
        if loc is None:
            return [f"Location {name} not found"]
        if loc.resource_id is None:
            return [f"Location {loc.location_name} has no container resource attached"]
        try:
            child = resources.child_at(loc.resource_id, _key(condition.key))
        except Exception as exc:  # an unknown container or a malformed key: the condition cannot hold
            return [f"Location {loc.location_name}: {exc}"]
        where = f"location {loc.location_name}" + (
            f" at {condition.key}" if condition.key not in (0, None) else ""
        )
        if isinstance(condition, ResourceInLocationCondition):
            if child is None:
                return [f"Waiting for a resource in {where}"]
            if condition.resource_class and child.resource_class != condition.resource_class:
                return [f"Resource in {where} is a {child.resource_class}, not a {condition.resource_class}"]
            return []
        if child is not None:
            return [f"Waiting for {where} to be empty (holds {child.resource_name})"]
        return []
    if isinstance(condition, ResourceFieldCheckCondition | ResourceChildFieldCheckCondition):
        res = _resource(condition, resources)
        name = condition.resource_name or condition.resource_id
        if res is None:
            return [f"Resource {name} not found"]
        if isinstance(condition, ResourceChildFieldCheckCondition):
            child = resources.child_at(res.resource_id, _key(condition.key)) if res.is_container else None
            if child is None:
                return [f"Resource {res.resource_name} has no child at {condition.key}"]
            res = child
        found, value = field_value(res, condition.field.split("."))
        if not found:
            return [f"Resource {res.resource_name} has no field {condition.field}"]
        if not compare(value, condition.operator, condition.target_value):
            return [
                f"Waiting for {res.resource_name}.{condition.field} {condition.operator.value} "
                f"{condition.target_value!r} (it is {value!r})"
            ]
        return []
    if isinstance(condition, ExpressionCondition):
        parsed = parse_expression(condition.expression)
        res = resources.find(parsed.resource)
        if res is None:
            return [f"Resource {parsed.resource} not found (in {condition.expression!r})"]
        found, value = field_value(res, parsed.path)
        if not found:
            return [f"Resource {res.resource_name} has no field {'.'.join(parsed.path)}"]
        if not compare(value, parsed.operator, parsed.value):
            return [f"Waiting for {condition.expression} (it is {value!r})"]
        return []
    return [f"Unknown condition {condition!r}"]
