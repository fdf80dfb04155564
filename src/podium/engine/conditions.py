"""Conditions for ``.when()``: a small, safe expression language (never ``eval``).

Grammar (Python-like)::

    expr    := or
    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := operand (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in" | "is" | "is not") operand)?
    operand := NUMBER | STRING | True | False | None | "-" NUMBER | "[" [expr ("," expr)*] "]"
             | NAME ("." NAME | "[" expr "]")* | "(" expr ")"

Names are looked up on the job context: ``context.initial_data.area.kind`` or just ``initial_data.area.kind``;
attribute access on a mapping reads its key, a missing key or attribute gives ``None``, and an ordering
comparison that cannot be made (``None > 3``) is false rather than an error. :func:`parse_condition` parses
once, at registration, into a tree of closures; a bad expression raises
:class:`~podium.engine.errors.ExpressionError` with the position of the error.

Avtomatika 1.0b30's ``F`` filter objects are accepted too: ``F.initial_data["x"] == 1``,
``(F.a > 1) & ~(F.b == 2)``, ``F.kind.in_(["a", "b"])``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from podium.engine.errors import ExpressionError

__all__ = ["Condition", "F", "FilterExpr", "parse_condition"]

Evaluator = Callable[[Any], Any]

_MISSING = object()

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?)
  | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|\.|,|-)
    """,
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "is", "True", "False", "None"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def _get(obj: Any, key: Any) -> Any:
    """Attribute or key access that never raises: a miss is ``None``."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    if isinstance(obj, Sequence) and not isinstance(obj, str) and isinstance(key, int):
        return obj[key] if -len(obj) <= key < len(obj) else None
    if isinstance(key, str) and not key.startswith("_"):
        value = getattr(obj, key, _MISSING)
        return None if value is _MISSING else value
    return None


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        try:
            return bool(op(a, b))
        except TypeError:
            return False

    return compare


def _contains(a: Any, b: Any) -> bool:
    try:
        return a in b
    except TypeError:
        return False


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": _ordered(operator.lt),
    "<=": _ordered(operator.le),
    ">": _ordered(operator.gt),
    ">=": _ordered(operator.ge),
    "in": _contains,
    "not in": lambda a, b: not _contains(a, b),
    "is": operator.is_,
    "is not": operator.is_not,
}


class Condition:
    """A parsed condition: call :meth:`evaluate` with the job context (or any object/mapping)."""

    __slots__ = ("_fn", "source")

    def __init__(self, fn: Evaluator, source: str) -> None:
        self._fn = fn
        self.source = source

    def evaluate(self, context: Any) -> bool:
        """Truth of the condition for ``context``; never raises for missing data."""
        return bool(self._fn(context))

    def __and__(self, other: Condition | FilterExpr) -> Condition:
        a, b = self._fn, parse_condition(other)._fn
        return Condition(lambda c: a(c) and b(c), f"({self.source}) and ({other.source})")

    def __or__(self, other: Condition | FilterExpr) -> Condition:
        a, b = self._fn, parse_condition(other)._fn
        return Condition(lambda c: a(c) or b(c), f"({self.source}) or ({other.source})")

    def __invert__(self) -> Condition:
        a = self._fn
        return Condition(lambda c: not a(c), f"not ({self.source})")

    def __repr__(self) -> str:
        return f"Condition({self.source!r})"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, Any, int]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise ExpressionError(f"unexpected character {text[pos]!r}", expression=text, position=pos)
            kind = m.lastgroup or ""
            value = m.group()
            if kind == "num":
                self.tokens.append(
                    ("num", float(value) if any(c in value for c in ".eE") else int(value), pos)
                )
            elif kind == "str":
                self.tokens.append(("str", _unescape(value[1:-1]), pos))
            elif kind == "name":
                self.tokens.append(("kw" if value in _KEYWORDS else "name", value, pos))
            elif kind == "op":
                self.tokens.append(("op", value, pos))
            pos = m.end()
        self.tokens.append(("end", None, len(text)))
        self.i = 0

    def peek(self) -> tuple[str, Any, int]:
        return self.tokens[self.i]

    def next(self) -> tuple[str, Any, int]:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def error(self, message: str, pos: int | None = None) -> ExpressionError:
        return ExpressionError(message, expression=self.text, position=self.peek()[2] if pos is None else pos)

    def accept(self, kind: str, value: Any) -> bool:
        tok = self.peek()
        if tok[0] == kind and tok[1] == value:
            self.i += 1
            return True
        return False

    def expect(self, kind: str, value: Any) -> None:
        if not self.accept(kind, value):
            tok = self.peek()
            got = "end of expression" if tok[0] == "end" else repr(tok[1])
            raise self.error(f"expected {value!r}, got {got}")

    def parse(self) -> Evaluator:
        if self.peek()[0] == "end":
            raise self.error("empty expression")
        fn = self.or_()
        tok = self.peek()
        if tok[0] != "end":
            raise self.error(f"unexpected {tok[1]!r}")
        return fn

    def or_(self) -> Evaluator:
        parts = [self.and_()]
        while self.accept("kw", "or"):
            parts.append(self.and_())
        if len(parts) == 1:
            return parts[0]
        return lambda c: next((v for v in (p(c) for p in parts) if v), False)

    def and_(self) -> Evaluator:
        parts = [self.not_()]
        while self.accept("kw", "and"):
            parts.append(self.not_())
        if len(parts) == 1:
            return parts[0]

        def all_(c: Any) -> Any:
            value: Any = True
            for p in parts:
                value = p(c)
                if not value:
                    return value
            return value

        return all_

    def not_(self) -> Evaluator:
        if self.accept("kw", "not"):
            inner = self.not_()
            return lambda c: not inner(c)
        return self.compare()

    def compare(self) -> Evaluator:
        left = self.operand()
        tok = self.peek()
        op: str | None = None
        if tok[0] == "op" and tok[1] in ("==", "!=", "<", "<=", ">", ">="):
            op = tok[1]
            self.i += 1
        elif tok[0] == "kw" and tok[1] == "in":
            op = "in"
            self.i += 1
        elif tok[0] == "kw" and tok[1] == "not" and self.tokens[self.i + 1][1] == "in":
            op = "not in"
            self.i += 2
        elif tok[0] == "kw" and tok[1] == "is":
            self.i += 1
            op = "is not" if self.accept("kw", "not") else "is"
        if op is None:
            return left
        right = self.operand()
        fn = _COMPARE[op]
        nxt = self.peek()
        if nxt[0] == "op" and nxt[1] in _COMPARE:
            raise self.error("chained comparisons are not supported; use 'and'")
        return lambda c: fn(left(c), right(c))

    def operand(self) -> Evaluator:
        kind, value, pos = self.next()
        if kind in ("num", "str"):
            return lambda c: value
        if kind == "kw" and value in ("True", "False", "None"):
            const = {"True": True, "False": False, "None": None}[value]
            return lambda c: const
        if kind == "op" and value == "-":
            k2, v2, p2 = self.next()
            if k2 != "num":
                raise self.error("'-' must be followed by a number", p2)
            neg = -v2
            return lambda c: neg
        if kind == "op" and value == "(":
            inner = self.or_()
            self.expect("op", ")")
            return inner
        if kind == "op" and value == "[":
            items: list[Evaluator] = []
            if not self.accept("op", "]"):
                items.append(self.or_())
                while self.accept("op", ","):
                    items.append(self.or_())
                self.expect("op", "]")
            return lambda c: [i(c) for i in items]
        if kind == "name":
            return self.path(value)
        if kind == "end":
            raise self.error("unexpected end of expression", pos)
        raise self.error(f"unexpected {value!r}", pos)

    def path(self, root: str) -> Evaluator:
        steps: list[tuple[bool, Any]] = []  # (is_dynamic, key or evaluator)
        while True:
            if self.accept("op", "."):
                kind, value, pos = self.next()
                if kind not in ("name", "kw") or value in ("and", "or", "not", "in", "is"):
                    raise self.error("expected an attribute name after '.'", pos)
                steps.append((False, value))
            elif self.accept("op", "["):
                key = self.or_()
                self.expect("op", "]")
                steps.append((True, key))
            else:
                break
        if root == "context":
            first: Evaluator = lambda c: c  # noqa: E731
        else:
            first = lambda c: _get(c, root)  # noqa: E731
        if not steps:
            return first

        def resolve(c: Any) -> Any:
            value = first(c)
            for dynamic, key in steps:
                value = _get(value, key(c) if dynamic else key)
                if value is None:
                    return None
            return value

        return resolve


def parse_condition(expression: str | Condition | FilterExpr) -> Condition:
    """Parse an expression (or accept an ``F`` filter / a parsed condition) into a :class:`Condition`."""
    if isinstance(expression, Condition):
        return expression
    if isinstance(expression, FilterExpr):
        return expression._condition()
    if not isinstance(expression, str):
        raise TypeError(f"a condition is a string or an F filter, not {type(expression).__name__}")
    return Condition(_Parser(expression).parse(), expression)


class FilterExpr:
    """A path on the context built with ``F`` (``F.initial_data["kind"]``); comparisons give conditions."""

    __slots__ = ("_path",)

    def __init__(self, path: tuple[str | int, ...] = ()) -> None:
        self._path = path

    def __getattr__(self, name: str) -> FilterExpr:
        if name.startswith("__"):
            raise AttributeError(name)
        return FilterExpr((*self._path, name))

    def __getitem__(self, key: str | int) -> FilterExpr:
        return FilterExpr((*self._path, key))

    def _source(self) -> str:
        out = "context"
        for p in self._path:
            out += f".{p}" if isinstance(p, str) and p.isidentifier() else f"[{p!r}]"
        return out

    def _resolve(self, c: Any) -> Any:
        value = c
        for p in self._path:
            value = _get(value, p)
            if value is None:
                return None
        return value

    def _op(self, op: str, other: Any) -> Condition:
        fn = _COMPARE[op]
        if isinstance(other, FilterExpr):
            return Condition(
                lambda c: fn(self._resolve(c), other._resolve(c)), f"{self._source()} {op} {other._source()}"
            )
        return Condition(lambda c: fn(self._resolve(c), other), f"{self._source()} {op} {other!r}")

    def __eq__(self, other: object) -> Condition:  # type: ignore[override]
        return self._op("==", other)

    def __ne__(self, other: object) -> Condition:  # type: ignore[override]
        return self._op("!=", other)

    def __lt__(self, other: Any) -> Condition:
        return self._op("<", other)

    def __le__(self, other: Any) -> Condition:
        return self._op("<=", other)

    def __gt__(self, other: Any) -> Condition:
        return self._op(">", other)

    def __ge__(self, other: Any) -> Condition:
        return self._op(">=", other)

    def __hash__(self) -> int:
        return hash(self._path)

    def in_(self, values: Any) -> Condition:
        """True when the value is in ``values``."""
        return self._op("in", values)

    def not_in(self, values: Any) -> Condition:
        """True when the value is not in ``values``."""
        return self._op("not in", values)

    def is_(self, value: Any) -> Condition:
        """Identity (``F.x.is_(None)``)."""
        return self._op("is", value)

    def _condition(self) -> Condition:
        return Condition(lambda c: bool(self._resolve(c)), self._source())

    def __and__(self, other: Condition | FilterExpr) -> Condition:
        return self._condition() & parse_condition(other)

    def __or__(self, other: Condition | FilterExpr) -> Condition:
        return self._condition() | parse_condition(other)

    def __invert__(self) -> Condition:
        return ~self._condition()

    def __repr__(self) -> str:
        return f"F<{self._source()}>"


F = FilterExpr()
"""The root of filter expressions: ``F.initial_data["kind"] == "urgent"`` (Avtomatika 1.0b30's form)."""
