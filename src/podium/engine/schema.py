"""Validate data against a schema: a pydantic model class or a (subset of) JSON Schema dict.

The JSON Schema subset covers what blueprint contracts use: ``type`` (also a list), ``required``,
``properties``, ``additionalProperties: false``, ``enum``, ``const``, ``items``, ``minimum``/``maximum``,
``minLength``/``maxLength``, ``minItems``/``maxItems``. Errors name the field path (``area.kind``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = ["SchemaError", "schema_to_json", "validate_data"]


class SchemaError(ValueError):
    """Data does not match a schema; ``field`` is the dotted path of the first offending field."""

    def __init__(self, message: str, field: str | None) -> None:
        self.field = field
        super().__init__(message)


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list, tuple),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def schema_to_json(schema: Any) -> dict[str, Any] | None:
    """The JSON Schema of a schema (pydantic models give theirs), for contracts and docs."""
    if schema is None:
        return None
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_json_schema()
    if isinstance(schema, dict):
        return schema
    raise TypeError(f"a schema is a pydantic model class or a JSON Schema dict, not {type(schema).__name__}")


def validate_data(schema: Any, data: Any) -> Any:
    """Return ``data`` (a pydantic model's dump for model schemas) or raise :class:`SchemaError`."""
    if schema is None:
        return data
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        try:
            return schema.model_validate(data).model_dump(mode="json")
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or None
            raise SchemaError(f"{field or 'data'}: {err['msg']}", field) from None
    _check(schema, data, "")
    return data


def _type_ok(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(kind, (object,)))


def _fail(path: str, message: str) -> SchemaError:
    return SchemaError(f"{path or 'data'}: {message}", path or None)


def _check(schema: dict[str, Any], value: Any, path: str) -> None:
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_type_ok(value, k) for k in kinds):
            raise _fail(path, f"expected {' or '.join(kinds)}, got {type(value).__name__}")
    if "enum" in schema and value not in schema["enum"]:
        raise _fail(path, f"must be one of {schema['enum']!r}, got {value!r}")
    if "const" in schema and value != schema["const"]:
        raise _fail(path, f"must be {schema['const']!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise _fail(path, f"must be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise _fail(path, f"must be <= {schema['maximum']}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            raise _fail(path, f"must have at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise _fail(path, f"must have at most {schema['maxLength']} characters")
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                sub = f"{path}.{name}" if path else name
                raise _fail(sub, "field required")
        props: dict[str, Any] = schema.get("properties", {})
        for name, item in value.items():
            sub = f"{path}.{name}" if path else str(name)
            if name in props:
                _check(props[name], item, sub)
            elif schema.get("additionalProperties") is False:
                raise _fail(sub, "unexpected field")
            elif isinstance(schema.get("additionalProperties"), dict):
                _check(schema["additionalProperties"], item, sub)
    if isinstance(value, (list, tuple)):
        if "minItems" in schema and len(value) < schema["minItems"]:
            raise _fail(path, f"must have at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise _fail(path, f"must have at most {schema['maxItems']} items")
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                _check(schema["items"], item, f"{path}[{i}]" if path else f"[{i}]")
