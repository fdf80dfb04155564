"""Validate data against a schema: a pydantic model class or a (subset of) JSON Schema dict.

JSON Schema dicts are checked by :mod:`podium.wire.jsonschema`, the one contract checker podium has (the
server checks worker results with it too). Errors name the field path (``area.kind``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from podium.wire.jsonschema import schema_violation

__all__ = ["SchemaError", "schema_to_json", "validate_data"]


class SchemaError(ValueError):
    """Data does not match a schema; ``field`` is the dotted path of the first offending field."""

    def __init__(self, message: str, field: str | None) -> None:
        self.field = field
        super().__init__(message)


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
    violation = schema_violation(data, schema, root_name="")
    if violation is not None:
        raise SchemaError(f"{violation.path or 'data'}: {violation.reason}", violation.path or None)
    return data
