"""Step conditions: what must hold before a step may start, checked by the scheduler.

MADSci's four structured conditions (resource present / absent in a location, a resource's field against
a target, a container child's field against a target), plus podium's ``expression`` condition: one
comparison written as text, e.g. ``tips_200.quantity >= 8`` or ``"plate 1".attributes.sealed == true``.
Expressions are tokenised and parsed here, never ``eval``-ed: a resource reference, a dotted field path,
one operator, one literal (number, quoted string, true/false/null).

:func:`evaluate` returns the reasons a condition does not hold (empty when it holds).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Tag, field_validator

from podium.workcell._base import WorkcellModel
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
    "evaluate",
    "parse_expression",
]


class Operator(StrEnum):
    """Comparison operators (MADSci's names)."""

    IS_GREATER_THAN = "is_greater_than"
    IS_LESS_THAN = "is_less_than"
    IS_EQUAL_TO = "is_equal_to"
    IS_GREQUAL_TO = "is_greater_than_or_equal_to"
    IS_LEQUAL_TO = "is_less_than_or_equal_to"
    IS_NOT_EQUAL_TO = "is_not_equal_to"


_SYMBOLS = {
    ">": Operator.IS_GREATER_THAN,
    "<": Operator.IS_LESS_THAN,
    "==": Operator.IS_EQUAL_TO,
    ">=": Operator.IS_GREQUAL_TO,
    "<=": Operator.IS_LEQUAL_TO,
    "!=": Operator.IS_NOT_EQUAL_TO,
}


class Condition(WorkcellModel):
    """Base of every condition."""

    model_config = {"extra": "allow", "populate_by_name": True}
    condition_name: str = "A Condition"


GridKey = str | int | dict[str, Any] | None


class ResourceInLocationCondition(Condition):
    """Holds when the location's container has a child at ``key`` (``0``/``None``: any child)."""

    condition_type: Literal["resource_present"] = "resource_present"
    location_id: str | None = None
    location_name: str | None = None
    key: GridKey = 0
    resource_class: str | None = None


class NoResourceInLocationCondition(Condition):
    """Holds when the location's container has nothing at ``key`` (``0``/``None``: is empty)."""

    condition_type: Literal["no_resource_present"] = "no_resource_present"
    location_id: str | None = None
    location_name: str | None = None
    key: GridKey = 0


class ResourceFieldCheckCondition(Condition):
    """Holds when ``resource.<field> <operator> target_value``."""

    condition_type: Literal["resource_field_check"] = "resource_field_check"
    resource_id: str | None = None
    resource_name: str | None = None
    field: str
    operator: Operator
    target_value: Any = None


class ResourceChildFieldCheckCondition(Condition):
    """Holds when ``resource.child[key].<field> <operator> target_value``."""

    condition_type: Literal["resource_child_field_check"] = "resource_child_field_check"
    resource_id: str | None = None
    resource_name: str | None = None
    field: str
    operator: Operator
    key: GridKey = 0
    target_value: Any = None


class ExpressionCondition(Condition):
    """One comparison written as text (parsed, never evaluated as Python)."""

    condition_type: Literal["expression"] = "expression"
    expression: str

    @field_validator("expression")
    @classmethod
    def _parses(cls, value: str) -> str:
        parse_expression(value)
        return value


def _condition_tag(value: Any) -> str:
    kind = (
        value.get("condition_type") if isinstance(value, Mapping) else getattr(value, "condition_type", None)
    )
    if kind is None and isinstance(value, Mapping) and "expression" in value:
        return "expression"
    return str(kind or "").lower()


Conditions = Annotated[
    Annotated[ResourceInLocationCondition, Tag("resource_present")]
    | Annotated[NoResourceInLocationCondition, Tag("no_resource_present")]
    | Annotated[ResourceFieldCheckCondition, Tag("resource_field_check")]
    | Annotated[ResourceChildFieldCheckCondition, Tag("resource_child_field_check")]
    | Annotated[ExpressionCondition, Tag("expression")],
    Discriminator(_condition_tag),
]


# --- the expression language -------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<op>==|!=|>=|<=|>|<)
      | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<name>[A-Za-z_][A-Za-z0-9_\-]*)
      | (?P<dot>\.)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class ParsedExpression:
    """``resource`` (name or id), ``path`` (dotted fields), ``operator``, ``value`` (a JSON literal)."""

    resource: str
    path: tuple[str, ...]
    operator: Operator
    value: Any


def parse_expression(text: str) -> ParsedExpression:
    """Parse ``<resource>.<field>[.<field>...] <op> <literal>``; ValueError naming what is wrong."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"cannot read {text[pos:]!r} in condition {text!r}")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    if not tokens or tokens[0][0] not in {"name", "str"}:
        raise ValueError(f"condition {text!r} must start with a resource name")
    resource = _literal(tokens[0][1]) if tokens[0][0] == "str" else tokens[0][1]
    path: list[str] = []
    i = 1
    while i < len(tokens) and tokens[i][0] == "dot":
        if i + 1 >= len(tokens) or tokens[i + 1][0] != "name":
            raise ValueError(f"condition {text!r}: a field name must follow '.'")
        path.append(tokens[i + 1][1])
        i += 2
    if not path:
        raise ValueError(f"condition {text!r}: name a field, as in tips.quantity")
    if i >= len(tokens) or tokens[i][0] != "op":
        raise ValueError(f"condition {text!r}: expected one of == != < <= > >= after the field")
    op = _SYMBOLS[tokens[i][1]]
    rest = tokens[i + 1 :]
    if len(rest) != 1:
        raise ValueError(f"condition {text!r}: expected exactly one value after the operator")
    kind, raw = rest[0]
    if kind == "num":
        value: Any = float(raw) if any(c in raw for c in ".eE") else int(raw)
    elif kind == "str":
        value = _literal(raw)
    elif raw in {"true", "false", "null"}:
        value = {"true": True, "false": False, "null": None}[raw]
    else:
        raise ValueError(f"condition {text!r}: {raw!r} is not a number, a quoted string, true, false or null")
    return ParsedExpression(str(resource), tuple(path), op, value)


def _literal(raw: str) -> str:
    if raw.startswith("'"):
        raw = '"' + raw[1:-1].replace('\\"', '"').replace('"', '\\"') + '"'
    value: str = json.loads(raw)
    return value


# --- evaluation ----------------------------------------------------------------------------------


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
