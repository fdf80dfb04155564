"""The .when() expression language: parsed once, safe, with positions in errors; F filters too."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from podium.engine import ExpressionError, F, parse_condition

CTX = SimpleNamespace(
    initial_data={
        "type": "urgent",
        "area": {"kind": "lab", "size": 12},
        "tags": ["a", "b"],
        "flag": True,
        "n": None,
    },
    state_history={"score": 0.75, "count": 3},
)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("context.initial_data.type == 'urgent'", True),
        ('context.initial_data.type != "urgent"', False),
        ("context.initial_data.area.kind == 'lab'", True),
        ("initial_data.area.size > 10 and state_history.count <= 3", True),
        ("initial_data.area.size > 100 or state_history.score >= 0.75", True),
        ("not initial_data.flag", False),
        ("not (initial_data.area.size > 10 and initial_data.type == 'x')", True),
        ("'a' in initial_data.tags", True),
        ("'z' not in initial_data.tags", True),
        ("initial_data.type in ['urgent', 'high']", True),
        ("initial_data.flag == True", True),
        ("initial_data.n == None and initial_data.n is None", True),
        ("initial_data.missing.deeper == None", True),
        ("initial_data.missing > 3", False),
        ("state_history.count == 3.0", True),
        ("state_history.count > -1", True),
        ("initial_data['area']['kind'] == 'lab'", True),
        ("initial_data.tags[1] == 'b'", True),
    ],
)
def test_expressions_evaluate(expr: str, expected: bool) -> None:
    assert parse_condition(expr).evaluate(CTX) is expected


def test_dict_context_works_too() -> None:
    assert parse_condition("initial_data.type == 'urgent'").evaluate({"initial_data": {"type": "urgent"}})


@pytest.mark.parametrize(
    ("expr", "position"),
    [
        ("context.initial_data.type == ", 29),
        ("initial_data.type === 'x'", 20),
        ("(initial_data.a == 1", 20),
        ("initial_data.a == 1 1", 20),
        ("initial_data.a @ 1", 15),
        ("", 0),
        ("a < b < c", 6),
    ],
)
def test_bad_expressions_fail_with_position(expr: str, position: int) -> None:
    with pytest.raises(ExpressionError) as info:
        parse_condition(expr)
    assert info.value.position == position
    assert f"position {position}" in str(info.value)


def test_no_eval_of_python() -> None:
    # a call is not part of the language: it fails to parse instead of running
    with pytest.raises(ExpressionError):
        parse_condition("__import__('os').system('true')")
    # dunder/private attributes are never read
    assert parse_condition("initial_data.__class__ == None").evaluate(CTX)


def test_f_filters() -> None:
    assert (F.initial_data["type"] == "urgent").evaluate(CTX)
    assert ((F.initial_data.area.size > 10) & ~(F.state_history.count == 4)).evaluate(CTX)
    assert (F.initial_data.type.in_(["x", "urgent"]) | (F.state_history.count < 0)).evaluate(CTX)
    assert not (F.initial_data.area.size >= 13).evaluate(CTX)
    assert parse_condition(F.initial_data.flag).evaluate(CTX)
