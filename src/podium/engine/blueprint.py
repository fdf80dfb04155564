"""Blueprints: state machines declared with decorators (Avtomatika's ``avtomatika.blueprint`` surface).

::

    bp = Blueprint("video", api_endpoint="/jobs/video")

    @bp.handler(is_start=True)
    async def start(initial_data, actions):
        actions.dispatch_task("transcode", {"path": initial_data["path"]}, transitions={"success": "end"})

    @bp.handler().when("context.initial_data.kind == 'urgent' and initial_data.size > 10")
    async def route(actions): ...

    @bp.handler(is_end=True)
    async def end(state_history): ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from podium.engine.conditions import Condition, F, FilterExpr, parse_condition
from podium.engine.definition import JobDefinition
from podium.engine.errors import BlueprintError

__all__ = ["Blueprint", "F", "HandlerDecorator"]

Fn = TypeVar("Fn", bound=Callable[..., Any])


class HandlerDecorator:
    """What ``bp.handler(...)`` returns: call it on a function, or narrow it with ``.when(expr)`` first."""

    def __init__(
        self,
        blueprint: Blueprint,
        state: str | None = None,
        *,
        is_start: bool = False,
        is_end: bool = False,
        condition: Condition | None = None,
    ) -> None:
        self._bp = blueprint
        self._state = state
        self._is_start = is_start
        self._is_end = is_end
        self._condition = condition

    def when(self, expression: str | Condition | FilterExpr) -> HandlerDecorator:
        """Only use this handler when ``expression`` holds (parsed now; errors carry the position)."""
        return HandlerDecorator(
            self._bp,
            self._state,
            is_start=self._is_start,
            is_end=self._is_end,
            condition=parse_condition(expression),
        )

    def __call__(self, func: Fn) -> Fn:
        name = self._state or func.__name__
        self._bp.add_state(
            name, func, is_start=self._is_start, is_end=self._is_end, condition=self._condition
        )
        return func


class Blueprint(JobDefinition):
    """A job definition built with decorators; see the module docstring."""

    kind = "blueprint"

    def __init__(
        self,
        name: str,
        api_endpoint: str | None = None,
        api_version: str | None = None,
        data_stores: dict[str, Any] | None = None,
        input_schema: Any = None,
    ) -> None:
        super().__init__(
            name,
            api_endpoint=api_endpoint,
            api_version=api_version,
            input_schema=input_schema,
            data_stores=data_stores,
        )

    def add_data_store(self, name: str, initial_data: Any) -> None:
        """Add a named data store handlers can ask for through ``data_stores``."""
        if name in self.data_stores:
            raise BlueprintError(f"{self.name}: data store {name!r} already exists")
        self.data_stores[name] = initial_data

    def handler(
        self,
        *args: Any,
        is_start: bool = False,
        is_end: bool = False,
        condition: str | Condition | FilterExpr | None = None,
    ) -> Any:
        """Register a state handler: ``@bp.handler``, ``@bp.handler("state")``, ``@bp.handler(is_start=True)``,
        ``@bp.handler("state", F.x == 1)``, ``@bp.handler("state", "expr")`` or ``@bp.handler().when("...")``."""
        state: str | None = None
        cond = parse_condition(condition) if condition is not None else None
        if len(args) > 2:
            raise TypeError(f"handler() takes at most 2 positional arguments, got {len(args)}")
        for i, arg in enumerate(args):
            if isinstance(arg, (FilterExpr, Condition)) or (i == 1 and isinstance(arg, str)):
                cond = parse_condition(arg)
            elif isinstance(arg, str):
                state = arg
            elif callable(arg) and len(args) == 1:
                return HandlerDecorator(self, None, is_start=is_start, is_end=is_end, condition=cond)(arg)
            elif arg is not None:
                raise TypeError(f"invalid handler() argument {arg!r}")
        return HandlerDecorator(self, state, is_start=is_start, is_end=is_end, condition=cond)

    def aggregator(self, state_or_func: str | Callable[..., Any] | None = None) -> Any:
        """Register the fan-in handler of a state (``@bp.aggregator`` or ``@bp.aggregator("state")``)."""

        def decorator(func: Fn) -> Fn:
            name = state_or_func if isinstance(state_or_func, str) else func.__name__
            self.add_state(name, func, aggregator=True)
            return func

        if callable(state_or_func):
            return decorator(state_or_func)
        return decorator
