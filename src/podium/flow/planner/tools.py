"""Running one tool call for the planner: the context a tool sees, and the outcome it leaves.

:func:`run_tool` never raises for what a tool does: an exception becomes a structured failure (its class
as ``error_code``, its message, and its ``suggestion``/``remedy`` attribute when it has one) that the
LLM reads to replan; output that does not match the tool's model becomes an error; ``await ctx.pause()``
becomes a pause.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ..catalog import NodeSpec
from . import prompts
from .llm import errors_json
from .models import PlannerPause, PlannerPauseReason, dump_json, validator

__all__ = ["PauseSignal", "PlannerContext", "ToolOutcome", "failure_payload", "run_tool", "tool_error"]

PauseHandler = Callable[[PlannerPauseReason, dict[str, Any]], Awaitable[PlannerPause]]


class PauseSignal(Exception):
    """Raised by ``ctx.pause()`` through the tool's code; the planner turns it into a :class:`PlannerPause`."""

    def __init__(self, pause: PlannerPause) -> None:
        super().__init__(pause.reason)
        self.pause = pause


class PlannerContext:
    """What a tool receives as ``ctx``: the run's ``meta`` and ``await ctx.pause(reason, payload)``."""

    __slots__ = ("_on_pause", "meta")

    def __init__(self, meta: Mapping[str, Any] | None, on_pause: PauseHandler) -> None:
        self.meta: dict[str, Any] = {} if meta is None else dict(meta)
        self._on_pause = on_pause

    async def pause(
        self, reason: PlannerPauseReason, payload: Mapping[str, Any] | None = None
    ) -> PlannerPause:
        """Stop the run here and hand a resume token to the caller; does not return inside a planner run."""
        raise PauseSignal(await self._on_pause(reason, dict(payload or {})))


@dataclass(slots=True)
class ToolOutcome:
    """A tool call that gave no output: ``error`` (+ ``failure`` for exceptions), or ``pause``."""

    error: str | None = None
    failure: dict[str, Any] | None = None
    pause: PlannerPause | None = None


def failure_payload(spec: NodeSpec, args: BaseModel, exc: BaseException) -> dict[str, Any]:
    """The structured failure the LLM sees for an exception raised by a tool."""
    suggestion = getattr(exc, "suggestion", None)
    if suggestion is None:
        suggestion = getattr(exc, "remedy", None)
    payload: dict[str, Any] = {
        "node": spec.name,
        "args": dump_json(args),
        "error_code": type(exc).__name__,
        "message": str(exc),
    }
    if suggestion:
        payload["suggestion"] = str(suggestion)
    return payload


def tool_error(spec: NodeSpec, exc: BaseException) -> str:
    return f"tool '{spec.name}' raised {type(exc).__name__}: {exc}"


async def run_tool(spec: NodeSpec, args: BaseModel, ctx: PlannerContext) -> BaseModel | ToolOutcome:
    """Call ``spec``'s function with validated ``args`` and validate what it returns.

    Returns the validated output (an instance of ``spec.out_model``) or, when there is none, a
    :class:`ToolOutcome` saying why (the usual case allocates nothing beyond the output).
    """
    try:
        raw = await spec.node.func(args, ctx)
    except PauseSignal as signal:
        return ToolOutcome(pause=signal.pause)
    except Exception as exc:
        return ToolOutcome(error=tool_error(spec, exc), failure=failure_payload(spec, args, exc))
    try:
        return validator(spec.out_model)(raw)  # type: ignore[no-any-return]
    except ValidationError as exc:
        return ToolOutcome(error=prompts.render_output_validation_error(spec.name, errors_json(exc)))
