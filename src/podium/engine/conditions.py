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

Avtomatika 1.0b30's ``F`` filters (its ``fast_filter.F``) build the same thing from Python operators:
``F.initial_data["x"] == 1``, ``(F.a > 1) & ~(F.b == 2) | F.c.in_([1, 2])``, nested ``F.a.b["c"]``,
``F.tags[...]`` over a list with ``.any()`` / ``.all()``, ``.not_in``, ``.contains``, ``.is_`` / ``.is_not``,
``.len()``, ``.regexp(p)``, ``.func(cb)``, ``.cast(t)``, ``.attr_(name)``, arithmetic, method calls
(``F.text.startswith("a")``). Both forms are one class, :class:`FilterExpr` (``FastF``; ``Condition`` is the
same class): each operation composes a closure once, when the expression is built; nothing is ever compiled
from text or ``eval``-ed. As in Avtomatika, a missing attribute or key reads as ``None``, a comparison or
arithmetic that cannot be made is false / ``None``, and :meth:`FilterExpr.evaluate` is false when the
expression raises (a ``func`` callback, a ``cast``).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from podium.engine.errors import ExpressionError

__all__ = ["Condition", "F", "FastF", "FilterExpr", "parse_condition"]

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


def parse_condition(expression: str | FilterExpr | Any) -> FilterExpr:
    """Parse an expression string (or accept an ``F`` filter) into a :class:`FilterExpr`.

    A filter object of another library with a ``resolve(context)`` method (``fast_filter.F`` imported
    directly, ``magic_filter.F``) is accepted too and called as it is: its own evaluation applies."""
    if isinstance(expression, FilterExpr):
        return expression
    resolve = getattr(expression, "resolve", None)
    if not isinstance(expression, str) and callable(resolve):
        return FilterExpr(resolve, repr(expression))
    if not isinstance(expression, str):
        raise TypeError(f"a condition is a string or an F filter, not {type(expression).__name__}")
    return FilterExpr(_Parser(expression).parse(), expression)


# --- F filters ----------------------------------------------------------------------------------------


def _attr(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _item(obj: Any, key: Any) -> Any:
    if obj is None:
        return None
    try:
        return obj.get(key) if isinstance(obj, Mapping) else obj[key]
    except Exception:
        return None


def _call(target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if target is None or not callable(target):
        return None
    try:
        return target(*args, **kwargs)
    except Exception:
        return None


def _safe_compare(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def compare(a: Any, b: Any) -> Any:
        try:
            return op(a, b)
        except TypeError:
            return False

    return compare


def _safe_math(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def math(a: Any, b: Any) -> Any:
        if a is None or b is None:
            return None
        try:
            return op(a, b)
        except Exception:
            return None

    return math


def _length(value: Any) -> int:
    try:
        return len(value)
    except TypeError:
        return 0


def _over(value: Any, depth: int, leaf: Callable[[Any], Any]) -> Any:
    """``leaf`` applied to each element ``depth`` list levels down (``F.xs[...]`` maps over ``xs``)."""
    if depth == 0:
        return leaf(value)
    return [_over(v, depth - 1, leaf) for v in (value or [])]


def _value_fn(other: Any) -> tuple[Evaluator, str, int]:
    if isinstance(other, FilterExpr):
        return other._fn, other.source, other._depth
    return (lambda c: other), repr(other), 0


class FilterExpr:
    """A compiled expression over a job context; see the module docstring. ``F`` is its root."""

    __slots__ = ("_depth", "_fn", "source")

    def __init__(self, fn: Evaluator, source: str, depth: int = 0) -> None:
        self._fn = fn
        self.source = source
        self._depth = depth  # > 0: the value is a list mapped over by ``[...]``, that many levels deep

    # --- evaluating ---------------------------------------------------------------------------------

    def resolve(self, context: Any) -> Any:
        """The expression's value for ``context`` (may raise if a ``func``/``cast`` callback raises)."""
        return self._fn(context)

    def evaluate(self, context: Any) -> bool:
        """Truth of the expression for ``context``: never raises (an error is false, as in Avtomatika)."""
        try:
            return bool(self._fn(context))
        except Exception:
            return False

    def __call__(self, *args: Any, **kwargs: Any) -> FilterExpr:
        """Call the value (``F.text.upper()``); a non-callable or a raising call gives ``None``."""
        arg_fns = [_value_fn(a)[0] for a in args]
        kw_fns = {k: _value_fn(v)[0] for k, v in kwargs.items()}

        def call(c: Any) -> Any:
            a = tuple(f(c) for f in arg_fns)
            kw = {k: f(c) for k, f in kw_fns.items()}
            return _over(self._fn(c), self._depth, lambda v: _call(v, a, kw))

        return FilterExpr(call, f"{self.source}(...)", self._depth)

    def __bool__(self) -> bool:
        raise TypeError("an F expression has no truth value of its own: combine with & | ~, not and/or/not")

    def __hash__(self) -> int:
        return hash((self.source, self._depth, id(self._fn)))

    def __repr__(self) -> str:
        return f"<FastFilter: {self.source}>"

    # --- building -----------------------------------------------------------------------------------

    def _map(self, leaf: Callable[[Any], Any], source: str, depth: int | None = None) -> FilterExpr:
        fn, d = self._fn, self._depth
        return FilterExpr(lambda c: _over(fn(c), d, leaf), source, d if depth is None else depth)

    def __getattr__(self, name: str) -> FilterExpr:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.attr_(name)

    def attr_(self, name: str) -> FilterExpr:
        """Attribute (or mapping key) ``name``, for names that clash with a method (``F.attr_("resolve")``)."""
        if not isinstance(name, str) or name.startswith("_"):
            raise ValueError(f"invalid attribute name: {name!r}")
        return self._map(lambda v: _attr(v, name), f"{self.source}.{name}")

    def __getitem__(self, key: Any) -> FilterExpr:
        if key is Ellipsis:
            return FilterExpr(self._fn, f"{self.source}[...]", self._depth + 1)
        return self._map(lambda v: _item(v, key), f"{self.source}[{key!r}]")

    def _binary(self, op: Callable[[Any, Any], Any], other: Any, text: str, swap: bool = False) -> FilterExpr:
        mine = self._fn
        theirs, other_src, other_depth = _value_fn(other)
        a_src, b_src = (other_src, self.source) if swap else (self.source, other_src)
        source = f"({a_src} {text} {b_src})"

        def pair(x: Any, y: Any) -> Any:
            return op(y, x) if swap else op(x, y)

        if self._depth and not other_depth:
            d = self._depth
            return FilterExpr(
                lambda c: (lambda y: _over(mine(c), d, lambda x: pair(x, y)))(theirs(c)), source, d
            )
        if other_depth and not self._depth:
            d = other_depth
            return FilterExpr(
                lambda c: (lambda x: _over(theirs(c), d, lambda y: pair(x, y)))(mine(c)), source, d
            )
        return FilterExpr(lambda c: pair(mine(c), theirs(c)), source)

    def __eq__(self, other: object) -> FilterExpr:  # type: ignore[override]
        return self._binary(_safe_compare(operator.eq), other, "==")

    def __ne__(self, other: object) -> FilterExpr:  # type: ignore[override]
        return self._binary(_safe_compare(operator.ne), other, "!=")

    def __lt__(self, other: Any) -> FilterExpr:
        return self._binary(_safe_compare(operator.lt), other, "<")

    def __le__(self, other: Any) -> FilterExpr:
        return self._binary(_safe_compare(operator.le), other, "<=")

    def __gt__(self, other: Any) -> FilterExpr:
        return self._binary(_safe_compare(operator.gt), other, ">")

    def __ge__(self, other: Any) -> FilterExpr:
        return self._binary(_safe_compare(operator.ge), other, ">=")

    def __add__(self, other: Any) -> FilterExpr:
        return self._binary(_safe_math(operator.add), other, "+")

    def __radd__(self, other: Any) -> FilterExpr:
        return self._binary(_safe_math(operator.add), other, "+", swap=True)

    def __sub__(self, other: Any) -> FilterExpr:
        return self._binary(_safe_math(operator.sub), other, "-")

    def __rsub__(self, other: Any) -> FilterExpr:
        return self._binary(_safe_math(operator.sub), other, "-", swap=True)

    def __mul__(self, other: Any) -> FilterExpr:
        return self._binary(_safe_math(operator.mul), other, "*")

    def __rmul__(self, other: Any) -> FilterExpr:
        return self._binary(_safe_math(operator.mul), other, "*", swap=True)

    def __truediv__(self, other: Any) -> FilterExpr:
        return self._binary(_safe_math(operator.truediv), other, "/")

    def __rtruediv__(self, other: Any) -> FilterExpr:
        return self._binary(_safe_math(operator.truediv), other, "/", swap=True)

    def __mod__(self, other: Any) -> FilterExpr:
        return self._binary(_safe_math(operator.mod), other, "%")

    def __rmod__(self, other: Any) -> FilterExpr:
        return self._binary(_safe_math(operator.mod), other, "%", swap=True)

    def __pow__(self, other: Any) -> FilterExpr:
        return self._binary(_safe_math(operator.pow), other, "**")

    def __and__(self, other: Any) -> FilterExpr:
        return self._binary(lambda a, b: a and b, other, "&")

    def __rand__(self, other: Any) -> FilterExpr:
        return self._binary(lambda a, b: a and b, other, "&", swap=True)

    def __or__(self, other: Any) -> FilterExpr:
        return self._binary(lambda a, b: a or b, other, "|")

    def __ror__(self, other: Any) -> FilterExpr:
        return self._binary(lambda a, b: a or b, other, "|", swap=True)

    def __invert__(self) -> FilterExpr:
        return self._map(operator.not_, f"(~{self.source})")

    def not_(self) -> FilterExpr:
        """Negation (``~``)."""
        return ~self

    def __neg__(self) -> FilterExpr:
        return self._map(lambda v: None if v is None else -v, f"(-{self.source})")

    def __abs__(self) -> FilterExpr:
        return self._map(lambda v: abs(v or 0), f"abs({self.source})")

    def in_(self, values: Any) -> FilterExpr:
        """True when the value is in ``values`` (a collection, or another ``F`` expression)."""
        return self._binary(_safe_compare(lambda a, b: a in b), values, "in")

    def not_in(self, values: Any) -> FilterExpr:
        """True when the value is not in ``values``."""
        return ~self.in_(values)

    def contains(self, item: Any) -> FilterExpr:
        """True when the value contains ``item``."""
        return self._binary(_safe_compare(lambda a, b: b in a), item, "contains")

    def is_(self, value: Any) -> FilterExpr:
        """Identity (``F.x.is_(None)``)."""
        return self._map(lambda v: v is value, f"({self.source} is {value!r})")

    def is_not(self, value: Any) -> FilterExpr:
        """Non-identity (``F.x.is_not(None)``)."""
        return self._map(lambda v: v is not value, f"({self.source} is not {value!r})")

    def len(self) -> FilterExpr:
        """The length of the value (0 when it has none)."""
        return self._map(_length, f"len({self.source})")

    def any(self) -> FilterExpr:
        """True when any element of a ``[...]`` mapping is true."""
        fn = self._fn
        return FilterExpr(lambda c: any(fn(c) or []), f"{self.source}.any()")

    def all(self) -> FilterExpr:
        """True when every element of a ``[...]`` mapping is true."""
        fn = self._fn
        return FilterExpr(lambda c: all(fn(c) or []), f"{self.source}.all()")

    def regexp(self, pattern: str) -> FilterExpr:
        """True when ``pattern`` is found in the value as text (``re.search``); ``None`` for no value."""
        rx = re.compile(pattern)
        return self._map(
            lambda v: None if v is None else bool(rx.search(str(v))), f"{self.source}.regexp({pattern!r})"
        )

    def func(self, callback: Callable[[Any], Any]) -> FilterExpr:
        """``callback(value)``."""
        name = getattr(callback, "__name__", "callback")
        return self._map(callback, f"{self.source}.func({name})")

    def cast(self, type_: Callable[[Any], Any]) -> FilterExpr:
        """``type_(value)`` (``F.raw.cast(int) == 42``)."""
        return self._map(type_, f"{getattr(type_, '__name__', 'cast')}({self.source})")


Condition = FilterExpr
"""The class of a parsed condition (a ``.when()`` string or an ``F`` filter): the same class as ``FastF``."""

F = FilterExpr(lambda c: c, "F")
"""The root of filter expressions: ``F.initial_data["kind"] == "urgent"`` (Avtomatika 1.0b30's form)."""

FastF = FilterExpr
"""Avtomatika's (``fast_filter``'s) name for the class: ``isinstance(F.x == 1, FastF)`` holds."""
