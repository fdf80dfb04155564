"""Job definitions: the generic state machine the engine runs.

A :class:`JobDefinition` is a set of named states, each with handlers (conditional ones tried in order, then
the default), and flags for start, end and aggregator states. :class:`~podium.engine.blueprint.Blueprint`
is the decorator face of it; other modules (the workcell compiling a YAML workflow) build one in code::

    d = JobDefinition("wf")
    d.add_state("step_1", run_step_1, is_start=True, targets=["step_2"])
    d.add_state("step_2", run_step_2, is_end=True)
    engine.register_definition(d)

Handlers receive their arguments by parameter name (dependency injection, see :data:`CORE_PARAMS`);
the signature is analysed once, at registration, and a name that looks like a misspelt core name
(``actoins``) is refused there. Any other name is read from ``state_history`` (worker results are merged
into it), then ``initial_data``, then the parameter's default.
"""

from __future__ import annotations

import ast
import difflib
import inspect
import logging
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from podium.engine._purity import is_pure
from podium.engine.conditions import Condition, FilterExpr, parse_condition
from podium.engine.errors import BlueprintError

__all__ = ["CORE_PARAMS", "HandlerSpec", "JobDefinition", "StateSpec"]

log = logging.getLogger("podium.engine")

CORE_PARAMS = frozenset(
    {
        "job_id",
        "initial_data",
        "state_history",
        "actions",
        "client",
        "data_stores",
        "context",
        "aggregation_results",
        "task_files",
        "current_state",
        "webhook_url",
        "tracing_context",
        "policy",
    }
)
_NO_DEFAULT = inspect.Parameter.empty


@dataclass(slots=True, eq=False)
class HandlerSpec:
    """One handler function with its analysed parameters and optional condition (equal only to itself: a
    condition's ``==`` builds a filter expression, it does not compare)."""

    state: str
    fn: Callable[..., Any]
    params: tuple[tuple[str, Any], ...]  # (name, default or inspect.Parameter.empty)
    condition: Condition | None = None
    pure: bool = False
    """A pure decision (see :mod:`podium.engine._purity`): the engine may run it inside the previous write."""

    @classmethod
    def build(cls, state: str, fn: Callable[..., Any], condition: Condition | None = None) -> HandlerSpec:
        """Analyse ``fn``'s signature; raise :class:`BlueprintError` for a parameter that cannot be injected."""
        if not callable(fn):
            raise BlueprintError(f"state {state!r}: handler {fn!r} is not callable")
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError) as exc:
            raise BlueprintError(f"state {state!r}: cannot read the signature of {fn!r}: {exc}") from None
        params: list[tuple[str, Any]] = []
        where = f"handler {getattr(fn, '__qualname__', fn)!r} of state {state!r}"
        for p in sig.parameters.values():
            if p.kind is inspect.Parameter.VAR_POSITIONAL:
                raise BlueprintError(f"{where}: *{p.name} cannot be injected; name each argument")
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                continue
            if p.kind is inspect.Parameter.POSITIONAL_ONLY:
                raise BlueprintError(
                    f"{where}: positional-only parameter {p.name!r} cannot be injected by name"
                )
            if p.name not in CORE_PARAMS:
                close = difflib.get_close_matches(p.name, CORE_PARAMS, n=1, cutoff=0.75)
                if close:
                    raise BlueprintError(
                        f"{where}: unknown parameter {p.name!r}; did you mean {close[0]!r}? "
                        f"(injectable: {', '.join(sorted(CORE_PARAMS))}, or a state_history key)"
                    )
            params.append((p.name, p.default))
        return cls(state, fn, tuple(params), condition, is_pure(fn, tuple(params)))


@dataclass(slots=True)
class StateSpec:
    """A state: conditional handlers (tried in order), a default one, an aggregator, and flags."""

    name: str
    conditional: list[HandlerSpec] = field(default_factory=list)
    default: HandlerSpec | None = None
    aggregator: HandlerSpec | None = None
    is_start: bool = False
    is_end: bool = False
    targets: set[str] = field(default_factory=set)  # declared edges (for graphs and validation)

    @property
    def pure(self) -> bool:
        """Whether the state has handlers and every one is a pure decision (it may run inside a write)."""
        # Called a few times per job on the hot path: no generator.
        found = False
        for hs in self.conditional:
            if not hs.pure:
                return False
            found = True
        for one in (self.default, self.aggregator):
            if one is not None:
                if not one.pure:
                    return False
                found = True
        return found

    def handlers(self) -> Iterable[HandlerSpec]:
        """Every handler of the state."""
        yield from self.conditional
        if self.default is not None:
            yield self.default
        if self.aggregator is not None:
            yield self.aggregator


class JobDefinition:
    """A named state machine. See the module docstring."""

    kind = "definition"

    def __init__(
        self,
        name: str,
        *,
        api_endpoint: str | None = None,
        api_version: str | None = None,
        input_schema: Any = None,
        data_stores: dict[str, Any] | None = None,
    ) -> None:
        if not name or not isinstance(name, str):
            raise BlueprintError("a definition needs a name")
        self.name = name
        self.api_endpoint = api_endpoint
        self.api_version = api_version
        self.input_schema = input_schema
        self.data_stores: dict[str, Any] = dict(data_stores or {})
        self.states: dict[str, StateSpec] = {}
        self.start_state: str | None = None
        self.events_schema: dict[str, Any] = {}

    # --- building -----------------------------------------------------------------------------------

    def _state(self, name: str) -> StateSpec:
        spec = self.states.get(name)
        if spec is None:
            spec = self.states[name] = StateSpec(name)
        return spec

    def add_state(
        self,
        name: str,
        handler: Callable[..., Any] | None = None,
        *,
        is_start: bool = False,
        is_end: bool = False,
        aggregator: bool = False,
        condition: str | Condition | FilterExpr | None = None,
        targets: Iterable[str] = (),
    ) -> StateSpec:
        """Add a state (or a handler to an existing state). Raises :class:`BlueprintError` on conflicts."""
        spec = self._state(name)
        if handler is not None:
            cond = parse_condition(condition) if condition is not None else None
            hs = HandlerSpec.build(name, handler, cond)
            if aggregator:
                if spec.aggregator is not None:
                    raise BlueprintError(f"Aggregator for state '{name}' is already registered.")
                spec.aggregator = hs
            elif cond is not None:
                spec.conditional.append(hs)
            else:
                if spec.default is not None:
                    raise BlueprintError(f"Default handler for state '{name}' is already registered.")
                spec.default = hs
        if is_start:
            if self.start_state is not None and self.start_state != name:
                raise BlueprintError(
                    f"Blueprint '{self.name}' already has a start state: '{self.start_state}'."
                )
            self.start_state = name
            spec.is_start = True
        if is_end:
            spec.is_end = True
        spec.targets.update(targets)
        return spec

    def event(self, name: str, schema: Any = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare an event ``send_event`` may emit, with its schema (pydantic model or JSON Schema)."""
        self.events_schema[name] = schema

        def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
            return func

        return decorator

    # --- reading ------------------------------------------------------------------------------------

    @property
    def end_states(self) -> set[str]:
        """Names of the end states."""
        return {s.name for s in self.states.values() if s.is_end}

    def find_spec(self, state: str, context: Any, *, aggregate: bool = False) -> HandlerSpec | None:
        """The handler to run for ``state``: the aggregator after a fan-in, else the first matching condition,
        else the default (``None`` if nothing fits)."""
        spec = self.states.get(state)
        if spec is None:
            return None
        if aggregate and spec.aggregator is not None:
            return spec.aggregator
        for hs in spec.conditional:
            if hs.condition is not None and hs.condition.evaluate(context):
                return hs
        if spec.default is not None:
            return spec.default
        return spec.aggregator

    def transitions(self) -> dict[str, set[str]]:
        """State -> states it can lead to: declared targets plus literals found in handler source."""
        out: dict[str, set[str]] = {}
        for name, spec in self.states.items():
            targets = set(spec.targets)
            for hs in spec.handlers():
                targets |= _static_targets(hs.fn)
            out[name] = targets
        return out

    def validate(self) -> None:
        """Check the definition as a whole; raise :class:`BlueprintError` naming the problem."""
        if self.start_state is None:
            raise BlueprintError(
                f"Blueprint '{self.name}' must have exactly one start state. (use is_start=True on one handler)"
            )
        for name, spec in self.states.items():
            if spec.default is None and spec.aggregator is None and not spec.conditional:
                raise BlueprintError(f"{self.name}: state {name!r} has no handler")
        for source, targets in self.transitions().items():
            for target in targets:
                if target not in self.states:
                    raise BlueprintError(
                        f"Blueprint '{self.name}' has a dangling transition: "
                        f"state '{source}' leads to non-existent state '{target}'."
                    )
        for name, schema in self.events_schema.items():
            from podium.engine.schema import schema_to_json

            try:
                schema_to_json(schema)
            except TypeError as exc:
                raise BlueprintError(f"{self.name}: event {name!r}: {exc}") from None

    def mermaid(self) -> str:
        """The state graph as Mermaid ``stateDiagram-v2`` text."""
        lines = ["stateDiagram-v2"]
        if self.start_state:
            lines.append(f"    [*] --> {self.start_state}")
        for source, targets in self.transitions().items():
            for target in sorted(targets):
                lines.append(f"    {source} --> {target}")
        for name in sorted(self.end_states):
            lines.append(f"    {name} --> [*]")
        return "\n".join(lines)

    def get_contract(self) -> dict[str, Any]:
        """The public contract (Avtomatika's shape)."""
        from podium.engine.schema import schema_to_json

        return {
            "name": self.name,
            "api_endpoint": self.api_endpoint,
            "api_version": self.api_version,
            "start_state": self.start_state,
            "end_states": sorted(self.end_states),
            "handlers": [n for n, s in self.states.items() if s.default is not None or s.conditional],
            "aggregators": [n for n, s in self.states.items() if s.aggregator is not None],
            "conditional_handlers": [
                {"state": hs.state, "condition": hs.condition.source if hs.condition is not None else None}
                for s in self.states.values()
                for hs in s.conditional
            ],
            "input_schema": schema_to_json(self.input_schema),
            "events_schema": {k: schema_to_json(v) for k, v in self.events_schema.items()},
        }


def _static_targets(fn: Callable[..., Any]) -> set[str]:
    """State names an action call in ``fn``'s source names literally (best effort)."""
    return static_targets(fn)[0]


def static_targets(fn: Callable[..., Any]) -> tuple[set[str], bool]:
    """State names an action call in ``fn``'s source names literally, and whether that list is complete
    (``False`` when the source cannot be read or a target is computed at run time, ``go_to(name)``)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return set(), False
    out: set[str] = set()
    complete = True
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        attr = node.func.attr
        if attr == "go_to":
            if node.args and isinstance(node.args[0], ast.Constant):
                out.add(str(node.args[0].value))
            else:
                complete = False
        elif attr in ("dispatch_task", "await_human_approval", "run_blueprint"):
            values = [k.value for k in node.keywords if k.arg == "transitions"]
            if len(node.args) > 2:
                values.append(node.args[2])
            for v in values:
                if isinstance(v, ast.Dict):
                    for x in v.values:
                        if isinstance(x, ast.Constant):
                            out.add(str(x.value))
                        else:
                            complete = False
                else:
                    complete = False
        elif attr == "dispatch_parallel":
            targets = [k.value for k in node.keywords if k.arg == "aggregate_into"]
            if len(node.args) > 1:
                targets.append(node.args[1])
            for t in targets:
                if isinstance(t, ast.Constant):
                    out.add(str(t.value))
                else:
                    complete = False
    return out, complete
