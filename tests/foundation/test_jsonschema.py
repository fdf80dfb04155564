"""The one contract checker: errors name the field, under the caller's root name or none."""

from __future__ import annotations

import pytest

from podium.engine.schema import SchemaError, validate_data
from podium.wire.jsonschema import schema_violation

SCHEMA = {
    "type": "object",
    "required": ["name", "wells"],
    "properties": {
        "name": {"type": "string", "pattern": "^P[0-9]+$"},
        "wells": {"type": "array", "items": {"type": "integer", "minimum": 1}, "maxItems": 96},
        "mode": {"enum": ["fast", "careful"]},
    },
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("data", "path", "reason"),
    [
        ({"wells": [1]}, "data.name", "field required"),
        ({"name": "X1", "wells": [1]}, "data.name", "must match"),
        ({"name": "P1", "wells": [1, 0]}, "data.wells[1]", "must be >= 1"),
        ({"name": "P1", "wells": (1, "a")}, "data.wells[1]", "expected integer"),
        ({"name": "P1", "wells": [1], "extra": 1}, "data.extra", "unexpected field"),
        ({"name": "P1", "wells": [1], "mode": "slow"}, "data.mode", "must be one of"),
    ],
)
def test_violations_name_the_field(data: dict[str, object], path: str, reason: str) -> None:
    violation = schema_violation(data, SCHEMA)
    assert violation is not None and violation.path == path and reason in violation.reason


def test_valid_data_and_no_schema_pass() -> None:
    assert schema_violation({"name": "P7", "wells": [1, 2], "mode": "fast"}, SCHEMA) is None
    assert schema_violation({"anything": 1}, None) is None


def test_engine_paths_have_no_root_name() -> None:
    with pytest.raises(SchemaError) as info:
        validate_data(SCHEMA, {"name": "P1", "wells": [1, 0]})
    assert info.value.field == "wells[1]" and str(info.value).startswith("wells[1]: must be >= 1")
    with pytest.raises(SchemaError) as root:
        validate_data({"type": "object"}, [1])
    assert root.value.field is None and str(root.value).startswith("data: expected object")
