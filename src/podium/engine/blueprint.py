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

import logging
import shutil
import subprocess
from collections.abc import Callable
from typing import Any, TypeVar

from podium.engine.conditions import Condition, F, FilterExpr, parse_condition
from podium.engine.datastore import as_data_store
from podium.engine.definition import JobDefinition, static_targets
from podium.engine.errors import BlueprintError

__all__ = ["Blueprint", "ConditionalHandler", "F", "HandlerDecorator"]

log = logging.getLogger("podium.engine")


def _placeholder() -> None:
    """Stands in ``Blueprint.handlers`` for a state that has only conditional handlers (as in Avtomatika)."""
    return None


def _foreign_filter(arg: Any) -> bool:
    """A filter object of another library (``fast_filter.F`` imported directly): it has ``resolve``."""
    return not isinstance(arg, str) and not isinstance(arg, type) and callable(getattr(arg, "resolve", None))


class ConditionalHandler:
    """A handler used only when its condition holds (Avtomatika's ``ConditionalHandler``)."""

    def __init__(self, blueprint: Any, state: str, func: Callable[..., Any], condition: Any) -> None:
        self.blueprint = blueprint
        self.state = state
        self.func = func
        self._filter = parse_condition(condition)

    @property
    def condition(self) -> FilterExpr:
        """The compiled condition."""
        return self._filter

    def evaluate(self, context: Any) -> bool:
        """Whether the condition holds for ``context`` (an error in it counts as false)."""
        return self._filter.evaluate(context)


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
            data_stores={k: as_data_store(v) for k, v in (data_stores or {}).items()},
        )

    def add_data_store(self, name: str, initial_data: Any) -> None:
        """Add a named data store handlers reach as ``data_stores.<name>`` (a mapping becomes an
        :class:`~podium.engine.datastore.AsyncDictStore`: ``await data_stores.<name>.get(key)``)."""
        if name in self.data_stores:
            raise BlueprintError(f"Data store with name '{name}' already exists.")
        self.data_stores[name] = as_data_store(initial_data)

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
            if isinstance(arg, FilterExpr) or (i == 1 and isinstance(arg, str)) or _foreign_filter(arg):
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

    # --- Avtomatika's views of the states (read-only: register through the decorators) -------------

    @property
    def handlers(self) -> dict[str, Callable[..., Any]]:
        """State -> its default handler (a placeholder for a state with only conditional handlers)."""
        out: dict[str, Callable[..., Any]] = {}
        for name, spec in self.states.items():
            if spec.default is not None:
                out[name] = spec.default.fn
            elif spec.conditional:
                out[name] = _placeholder
        return out

    @property
    def aggregator_handlers(self) -> dict[str, Callable[..., Any]]:
        """State -> its aggregator (the fan-in handler after ``dispatch_parallel``)."""
        return {n: s.aggregator.fn for n, s in self.states.items() if s.aggregator is not None}

    @property
    def conditional_handlers(self) -> list[ConditionalHandler]:
        """The conditional handlers, in registration order per state."""
        return [
            ConditionalHandler(self, hs.state, hs.fn, hs.condition)
            for spec in self.states.values()
            for hs in spec.conditional
            if hs.condition is not None
        ]

    def find_handler(self, state: str, context: Any) -> Callable[..., Any]:
        """The function that would run for ``state`` and ``context``: the first conditional handler whose
        condition holds, else the default, else the aggregator. Raises :class:`BlueprintError` (a
        ``ValueError``) when none fits."""
        spec = self.find_spec(state, context)
        if spec is None:
            raise BlueprintError(
                f"No suitable handler found for state '{state}' in blueprint '{self.name}' for the given "
                "context. (All conditions failed and no default handler registered)"
            )
        return spec.fn

    def get_handler_params(self, func: Callable[..., Any]) -> tuple[str, ...]:
        """The parameter names of a registered handler (injected by name)."""
        for spec in self.states.values():
            for hs in spec.handlers():
                if hs.fn is func:
                    return tuple(name for name, _ in hs.params)
        return ()

    def _get_all_transitions(self) -> tuple[dict[str, set[str]], int]:
        """(state -> states it leads to, number of handlers whose targets could not all be read)."""
        unknown = 0
        for spec in self.states.values():
            for hs in spec.handlers():
                unknown += not static_targets(hs.fn)[1]
        return self.transitions(), unknown

    def validate_integrity(self) -> None:
        """Refuse dangling transitions, and states the start state cannot reach when every target is known
        (a target computed at run time, ``go_to(name)``, only logs a warning, as Avtomatika does)."""
        transitions, unknown = self._get_all_transitions()
        for source, targets in transitions.items():
            for target in targets:
                if target not in self.states:
                    raise BlueprintError(
                        f"Blueprint '{self.name}' has a dangling transition: "
                        f"state '{source}' leads to non-existent state '{target}'."
                    )
        if self.start_state is None:
            return
        reachable, stack = {self.start_state}, [self.start_state]
        while stack:
            for target in transitions.get(stack.pop(), ()):
                if target not in reachable:
                    reachable.add(target)
                    stack.append(target)
        unreachable = [n for n in self.states if n not in reachable]
        if unreachable:
            msg = (
                f"Blueprint '{self.name}' has unreachable states: {', '.join(unreachable)}. "
                "All states must be reachable from the start state."
            )
            if unknown:
                log.warning("%s (%d handlers have targets known only at run time)", msg, unknown)
            else:
                raise BlueprintError(msg)

    def validate(self) -> None:
        """Check the blueprint as a whole (see :meth:`JobDefinition.validate` and :meth:`validate_integrity`)."""
        super().validate()
        self.validate_integrity()

    def render_graph(self, output_filename: str | None = None, output_format: str = "png") -> str | None:
        """The state graph as Graphviz DOT text; with ``output_filename``, rendered by Graphviz's ``dot``
        program (which must be on ``PATH``) to ``<output_filename>.<output_format>``."""
        lines = [f"// State Machine for {self.name}", "digraph {", "\tnode [shape=box style=rounded]"]
        transitions = self.transitions()
        for source, targets in transitions.items():
            for target in sorted(targets):
                lines.append(f'\t"{source}" -> "{target}"')
        for state in sorted(set(self.states) | {t for ts in transitions.values() for t in ts}):
            lines.append(f'\t"{state}" [label="{state}"]')
        lines.append("}")
        source = "\n".join(lines) + "\n"
        if not output_filename:
            return source
        dot = shutil.which("dot")
        if dot is None:
            raise BlueprintError("render_graph(output_filename=...) needs Graphviz's 'dot' program on PATH")
        target = f"{output_filename}.{output_format}"
        subprocess.run([dot, f"-T{output_format}", "-o", target], input=source.encode(), check=True)
        return None
