"""Step arguments against the types nodes declare (MADSci's annotation strings), and the input checks."""

from __future__ import annotations

from typing import Any

import pytest

from podium.errors import InvalidInputError
from podium.workcell.argtypes import argument_type_error
from podium.workcell.inputs import check_json_value, check_name, check_node_url

FITS: list[tuple[Any, str]] = [
    (5, "float"), (5.5, "float"), (5, "int"), (5.0, "int"), ("x", "str"), (True, "bool"), (None, "Optional[float]"),
    (1.5, "Optional[float]"), (3, "int | None"), ([1, 2], "list[int]"), ([], "list[str]"), ({"a": 1}, "dict[str, Any]"),
    ({"a": 1}, "dict[str, int]"), ("a", "Literal['a', 'b']"), (2, "Literal[1, 2]"), ([1, "a"], "tuple[int, str]"),
    ([1, 2], "tuple[int, ...]"), (1, "Union[int, str]"), ("x", "Union[int, str]"), ({"x": 1}, "LocationArgument"),
    ("p", "pathlib.Path"), ([[1], [2]], "list[list[int]]"), (1, "Any"), ({"k": [1]}, "dict"), ([1], "list"),
    ("anything", "bad[[["), (1, ""), (1, "Annotated[int, 'doc']"),
]  # fmt: skip
REFUSED: list[tuple[Any, str, str]] = [
    ("hot", "float", "must be float, not a string 'hot'"),
    (5.5, "int", "must be int, not a number 5.5"),
    (True, "int", "must be int, not a boolean True"),
    (1, "str", "must be str, not a number 1"),
    ("a", "Optional[float]", "must be Optional[float], not a string 'a'"),
    ([1, "a"], "list[int]", "must be list[int], not a list [1, 'a']"),
    ({"a": "b"}, "dict[str, int]", "must be dict[str, int], not an object {'a': 'b'}"),
    ("c", "Literal['a', 'b']", "must be Literal['a', 'b'], not a string 'c'"),
    (None, "bool", "must be bool, not null"),
    ("x" * 100, "int", "must be int, not a string '" + "x" * 56 + "..."),
]


@pytest.mark.parametrize(("value", "declared"), FITS)
def test_values_that_fit_or_types_it_does_not_know_pass(value: Any, declared: str) -> None:
    assert argument_type_error(value, declared) is None


@pytest.mark.parametrize(("value", "declared", "why"), REFUSED)
def test_values_that_do_not_fit_say_why(value: Any, declared: str, why: str) -> None:
    assert argument_type_error(value, declared) == why


@pytest.mark.parametrize(
    ("name", "ok"),
    [("liquidhandler_1", True), ("deck 1", True), ("a/b", False), ("a\x00b", False), ("", False), (" a", False),
     ("a\\b", False), ("a?b", False), ("n" * 128, True), ("n" * 129, False), ("tab\there", False)],
)  # fmt: skip
def test_names(name: str, ok: bool) -> None:
    if ok:
        assert check_name(name, field="node_name") == name
    else:
        with pytest.raises(InvalidInputError) as caught:
            check_name(name, field="node_name")
        assert caught.value.field == "node_name"


@pytest.mark.parametrize(
    ("url", "ok"),
    [("http://127.0.0.1:2000", True), ("https://node.lab/x", True), ("inprocess://arm", True),
     ("http://podium:tok@h:1", True), ("notaurl", False), ("ftp://h", False), ("http://", False),
     ("http://h:99999", False), ("http://h:port", False), ("http://h /x", False), ("http://h\x00", False)],
)  # fmt: skip
def test_node_urls(url: str, ok: bool) -> None:
    if ok:
        assert check_node_url(url) == url
    else:
        with pytest.raises(InvalidInputError, match="node_url"):
            check_node_url(url)


def test_json_values_the_store_keeps_exactly() -> None:
    check_json_value({"a": [1, 2.5, "x", None, True, {"b": 2**63 - 1}]}, field="body")
    for bad, path in [
        ({"a": [1, 2**63]}, "body.a.1"),
        ({"x": -(2**63) - 1}, "body.x"),
        ({"f": float("nan")}, "body.f"),
        ({"f": [float("inf")]}, "body.f.0"),
    ]:
        with pytest.raises(InvalidInputError) as caught:
            check_json_value(bad, field="body")
        assert caught.value.field == path
    deep: Any = 1
    for _ in range(70):
        deep = [deep]
    with pytest.raises(InvalidInputError, match="nested deeper"):
        check_json_value(deep, field="body")
