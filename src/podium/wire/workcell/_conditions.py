"""Step conditions as data: what must hold before a step may start (the scheduler checks them).

MADSci's four structured conditions (resource present / absent in a location, a resource's field against
a target, a container child's field against a target), plus podium's ``expression`` condition: one
comparison written as text, e.g. ``tips_200.quantity >= 8`` or ``"plate 1".attributes.sealed == true``.
Expressions are tokenised and parsed here, never ``eval``-ed: a resource reference, a dotted field path,
one operator, one literal (number, quoted string, true/false/null).

``podium.workcell.conditions.evaluate`` checks them against the workcell's resources.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Tag, field_validator

from podium.wire.workcell._base import WorkcellModel

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
