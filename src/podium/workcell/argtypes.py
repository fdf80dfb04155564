"""Whether a step argument's JSON value fits the type its node declares for it.

A node's ``/info`` declares each action argument's ``argument_type`` as a string: MADSci writes the
Python annotation (``int``, ``float``, ``list[str]``, ``Optional[float]``, ``dict[str, Any]``,
``Literal['a', 'b']``...), podium's node SDK the same. :func:`argument_type_error` reads that string and
checks the value against the types it knows; anything it does not know (a class of the node's own, a
pydantic model, ``Path``...) is accepted, so a check never refuses what the node would take.
"""

from __future__ import annotations

import ast
import re
from typing import Any

__all__ = ["argument_type_error"]

_Type = tuple[str, tuple[Any, ...]]
"""A parsed annotation: (name, arguments); a Literal's arguments are its values."""

_TOKEN = re.compile(
    r"\s*(?:(?P<name>[A-Za-z_][\w.]*)|(?P<lit>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|-?\d+(?:\.\d+)?)|(?P<sym>\.\.\.|[\[\],|]))"
)

_SEQUENCES = {
    "list",
    "List",
    "Sequence",
    "tuple",
    "Tuple",
    "set",
    "Set",
    "frozenset",
    "FrozenSet",
    "Iterable",
}
_MAPPINGS = {"dict", "Dict", "Mapping", "MutableMapping"}
_ANY = {"Any", "object", "JsonValue"}


def argument_type_error(value: Any, argument_type: str | None) -> str | None:
    """Why ``value`` does not fit ``argument_type`` (``"a number"``...), or ``None`` when it fits or the
    type is not one this check knows."""
    if not argument_type:
        return None
    try:
        parsed = _parse(argument_type)
    except (ValueError, SyntaxError, IndexError):
        return None
    if _fits(value, parsed):
        return None
    shown = "" if value is None else f" {_short(value)}"
    return f"must be {argument_type}, not {_json_kind(value)}{shown}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"cannot read {text!r} at {pos}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _parse(text: str) -> _Type:
    tokens = _tokens(text)
    parsed, end = _union(tokens, 0)
    if end != len(tokens):
        raise ValueError(f"trailing text in {text!r}")
    return parsed


def _union(tokens: list[tuple[str, str]], i: int) -> tuple[_Type, int]:
    members = []
    first, i = _atom(tokens, i)
    members.append(first)
    while i < len(tokens) and tokens[i] == ("sym", "|"):
        nxt, i = _atom(tokens, i + 1)
        members.append(nxt)
    return (members[0], i) if len(members) == 1 else (("Union", tuple(members)), i)


def _atom(tokens: list[tuple[str, str]], i: int) -> tuple[_Type, int]:
    kind, text = tokens[i]
    if text == "...":
        return ("Ellipsis", ()), i + 1
    if kind == "lit":
        return ("=", (ast.literal_eval(text),)), i + 1
    if kind != "name":
        raise ValueError(f"unexpected {text!r}")
    name = text.rsplit(".", 1)[-1]
    i += 1
    args: list[Any] = []
    if i < len(tokens) and tokens[i] == ("sym", "["):
        i += 1
        while tokens[i] != ("sym", "]"):
            arg, i = _union(tokens, i)
            args.append(arg)
            if tokens[i] == ("sym", ","):
                i += 1
        i += 1
    return (name, tuple(args)), i


def _fits(value: Any, tp: _Type) -> bool:
    name, args = tp
    if name in _ANY:
        return True
    if name in ("None", "NoneType"):
        return value is None
    if name == "Optional":
        return value is None or all(_fits(value, a) for a in args)
    if name == "Union":
        return any(_fits(value, a) for a in args)
    if name == "Annotated":
        return not args or _fits(value, args[0])
    if name == "Literal":
        literals = [a[1][0] for a in args if a[0] == "="]
        return len(literals) < len(args) or any(value == v and type(value) is type(v) for v in literals)
    if name == "=":
        return bool(value == args[0])
    if name == "bool":
        return isinstance(value, bool)
    if name == "int":
        return _number(value) and (isinstance(value, int) or float(value).is_integer())
    if name == "float":
        return _number(value)
    if name == "str":
        return isinstance(value, str)
    if name in _SEQUENCES:
        if not isinstance(value, list):
            return False
        homogeneous = name not in ("tuple", "Tuple") or (len(args) == 2 and args[1][0] == "Ellipsis")
        return not args or not homogeneous or all(_fits(v, args[0]) for v in value)
    if name in _MAPPINGS:
        return isinstance(value, dict) and (len(args) < 2 or all(_fits(v, args[1]) for v in value.values()))
    return True  # a type this check does not know: the node decides


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
