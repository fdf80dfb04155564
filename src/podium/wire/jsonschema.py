"""Contracts: a JSON Schema subset, with errors that name the field.

One checker for every contract podium enforces: a blueprint's input schema (``podium.engine``), a worker
skill's output schema (the server), and whatever comes next. It covers the common subset: types,
properties, required, additionalProperties, items, enum/const, bounds, lengths, pattern,
anyOf/oneOf/allOf and local ``$ref``. Paths read ``data.items[2].name`` (the root name is the caller's).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["SchemaViolation", "schema_violation"]

JSON = dict[str, Any]


class SchemaViolation(ValueError):
    """Data does not match a contract; ``path`` names the field (``data.items[2].name``)."""

    def __init__(self, path: str, message: str) -> None:
        self.path, self.reason = path, message
        super().__init__(f"{path}: {message}")


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list, tuple),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _is_type(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(name, (object,)))


def _check(value: Any, schema: JSON, path: str, root: JSON) -> None:
    if "$ref" in schema:
        ref = str(schema["$ref"])
        target: Any = root
        for part in ref.removeprefix("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        _check(value, target, path, root)
        return
    for key in ("allOf",):
        for sub in schema.get(key, []):
            _check(value, sub, path, root)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            errors = []
            for sub in schema[key]:
                try:
                    _check(value, sub, path, root)
                    break
                except SchemaViolation as exc:
                    errors.append(exc.reason)
            else:
                raise SchemaViolation(path, "matches none of the allowed forms: " + "; ".join(errors))
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, t) for t in types):
            raise SchemaViolation(path, f"expected {' or '.join(types)}, got {type(value).__name__}")
    if "const" in schema and value != schema["const"]:
        raise SchemaViolation(path, f"must be {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaViolation(path, f"must be one of {schema['enum']!r}, got {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise SchemaViolation(path, f"must be >= {schema['minimum']}, got {value}")
        if "maximum" in schema and value > schema["maximum"]:
            raise SchemaViolation(path, f"must be <= {schema['maximum']}, got {value}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            raise SchemaViolation(path, f"must be > {schema['exclusiveMinimum']}, got {value}")
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            raise SchemaViolation(path, f"must be < {schema['exclusiveMaximum']}, got {value}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            raise SchemaViolation(path, f"must have at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise SchemaViolation(path, f"must have at most {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise SchemaViolation(path, f"must match {schema['pattern']!r}")
    if isinstance(value, list | tuple):
        if "minItems" in schema and len(value) < schema["minItems"]:
            raise SchemaViolation(path, f"must have at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise SchemaViolation(path, f"must have at most {schema['maxItems']} items")
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                _check(item, schema["items"], f"{path}[{i}]", root)
    if isinstance(value, dict):
        props: JSON = schema.get("properties") or {}
        for name in schema.get("required") or []:
            if name not in value:
                raise SchemaViolation(_join(path, name), "field required")
        for name, item in value.items():
            if name in props:
                _check(item, props[name], _join(path, name), root)
            elif schema.get("additionalProperties") is False:
                raise SchemaViolation(_join(path, name), "unexpected field")
            elif isinstance(schema.get("additionalProperties"), dict):
                _check(item, schema["additionalProperties"], _join(path, name), root)


def schema_violation(value: Any, schema: JSON | None, *, root_name: str = "data") -> SchemaViolation | None:
    """Check ``value`` against a JSON Schema (the common subset: types, properties, required,
    additionalProperties, items, enum/const, bounds, lengths, pattern, anyOf/oneOf/allOf, local $ref).
    Return the first violation, naming its field, or ``None``."""
    if not schema:
        return None
    try:
        _check(value, schema, root_name, schema)
    except SchemaViolation as exc:
        return exc
    return None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else str(name)
