"""A parallel plan: the LLM's branches run concurrently, then an optional join tool sees their results.

The join's arguments are filled from the branches where its model asks for them and the LLM did not say:
``expect`` (branch count), ``results`` (successful observations), ``branches`` (every branch), ``failures``,
``success_count``, ``failure_count``; its ``ctx.meta`` carries ``parallel_results``,
``parallel_success_count``, ``parallel_failure_count`` (and ``parallel_failures``) and ``parallel_input``.
A branch failure skips the join (reported as ``{"status": "skipped", "reason": "branch_failures"}``); a
pause in a branch or in the join pauses the run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from ..catalog import NodeSpec
from . import prompts
from .constraints import ConstraintTracker
from .eager import gather_eager
from .llm import errors_json
from .models import (
    PlannerAction,
    PlannerPause,
    Trajectory,
    TrajectoryStep,
    _dumpers,
    dump_json,
    dumps_json_data,
    validator,
)
from .tools import PlannerContext, ToolOutcome, run_tool

__all__ = ["ParallelPlan"]

_JOIN_FILLS = ("expect", "results", "branches", "failures", "success_count", "failure_count")
_fills: dict[type[BaseModel], tuple[str, ...]] = {}


def _fills_of(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of a join's model that the plan fills when the LLM did not say (looked up once per class)."""
    names = _fills.get(model)
    if names is None:
        fields = model.model_fields
        names = _fills[model] = tuple(name for name in _JOIN_FILLS if name in fields)
    return names


class ParallelPlan:
    """Runs one parallel action of a trajectory (``make_ctx`` builds the context every tool call gets)."""

    def __init__(
        self,
        specs: Mapping[str, NodeSpec],
        *,
        make_ctx: Callable[[Trajectory], PlannerContext],
        on_success: Callable[[str, Trajectory], None] | None,
    ) -> None:
        self._specs = specs
        self._make_ctx = make_ctx
        self._on_success = on_success

    def _setup_errors(self, action: PlannerAction) -> tuple[list[str], list[tuple[NodeSpec, BaseModel]]]:
        errors: list[str] = []
        entries: list[tuple[NodeSpec, BaseModel]] = []
        for item in action.plan or ():
            spec = self._specs.get(item.node)
            if spec is None:
                errors.append(prompts.render_invalid_node(item.node, list(self._specs)))
                continue
            try:
                entries.append((spec, validator(spec.args_model)(item.args or {})))
            except ValidationError as exc:
                errors.append(prompts.render_validation_error(spec.name, errors_json(exc)))
        return errors, entries

    async def run(
        self, action: PlannerAction, trajectory: Trajectory, tracker: ConstraintTracker
    ) -> tuple[dict[str, Any] | None, PlannerPause | None]:
        """Run ``action.plan`` and its join; the step is appended to ``trajectory``. Returns (observation, pause)."""
        error: str | None = None
        entries: list[tuple[NodeSpec, BaseModel]] = []
        if action.next_node is not None:
            error = prompts.render_parallel_with_next_node(action.next_node)
        elif not action.plan:
            error = prompts.render_empty_parallel_plan()
        else:
            errors, entries = self._setup_errors(action)
            if errors:
                error = prompts.render_parallel_setup_error(errors)
        if error is not None:
            trajectory.steps.append(TrajectoryStep(action=action, error=error))
            return None, None

        ctx = self._make_ctx(trajectory)
        # one task per branch, as gather gives them, but each starts at once (eagerly): a branch whose tool
        # does not suspend is done before the next starts, and costs neither a scheduled step nor a turn of
        # the loop; the branches that suspend are awaited together
        outcomes = await gather_eager(run_tool(spec, args, ctx) for spec, args in entries)
        branches: list[dict[str, Any]] = []
        successes: list[Any] = []
        failures: list[dict[str, Any]] = []
        pause: PlannerPause | None = None
        on_success = self._on_success
        tracker.record_hops(len(entries))  # one per branch (nothing reads the tracker in between)
        # whether the observation is JSON data (TrajectoryStep.observation_is_dumped): the dumps are
        # pydantic-core's, the rest node names, error texts and run_tool's failures; a pause's payload is not
        json_data = True
        dumpers = _dumpers  # dump_json and dumps_json_data inline: a class in it dumps to JSON data
        for (spec, args), outcome in zip(entries, outcomes, strict=True):
            if not isinstance(outcome, ToolOutcome):  # the tool's validated output
                dump = dumpers.get(type(outcome))
                if dump is not None:
                    observed = dump(outcome)
                else:
                    observed = dump_json(outcome)
                    json_data = json_data and type(outcome) in dumpers
                dump = dumpers.get(type(args))
                if dump is not None:
                    dumped_args = dump(args)
                else:
                    dumped_args = dump_json(args)
                    json_data = json_data and type(args) in dumpers
                branches.append({"node": spec.name, "args": dumped_args, "observation": observed})
                successes.append(observed)
                if on_success is not None:
                    on_success(spec.name, trajectory)
                continue
            branch: dict[str, Any] = {"node": spec.name, "args": dump_json(args)}
            json_data = json_data and dumps_json_data(args)
            if outcome.pause is not None and pause is None:
                pause = outcome.pause
                branch["pause"] = {"reason": pause.reason, "payload": dict(pause.payload)}
            else:
                text = outcome.error or prompts.render_parallel_unknown_failure(spec.name)
                branch["error"] = text
                entry: dict[str, Any] = {"node": spec.name, "error": text}
                if outcome.failure is not None:
                    branch["failure"] = entry["failure"] = dict(outcome.failure)
                failures.append(entry)
            branches.append(branch)

        observation: dict[str, Any] = {
            "branches": branches,
            "stats": {"success": len(successes), "failed": len(failures)},
        }
        if pause is not None:
            observation["join"] = {"status": "skipped", "reason": "pause"}
        elif action.join is not None:
            join, pause, join_json_data = await self._join(
                action, trajectory, tracker, len(entries), branches, successes, failures
            )
            json_data = json_data and join_json_data
            if join is not None:
                observation["join"] = join
        step = TrajectoryStep(action=action, observation=observation)
        step.observation_is_dumped = json_data and pause is None
        trajectory.steps.append(step)
        return observation, pause

    async def _join(
        self,
        action: PlannerAction,
        trajectory: Trajectory,
        tracker: ConstraintTracker,
        expect: int,
        branches: list[dict[str, Any]],
        successes: list[Any],
        failures: list[dict[str, Any]],
    ) -> tuple[dict[str, Any] | None, PlannerPause | None, bool]:
        """The join's part of the observation, its pause, and whether that part is JSON data."""
        join_call = action.join  # read once: a pydantic model's attributes are slow to read
        assert join_call is not None
        spec = self._specs.get(join_call.node)
        if spec is None:
            return (
                {
                    "node": join_call.node,
                    "error": prompts.render_invalid_node(join_call.node, list(self._specs)),
                },
                None,
                True,
            )
        if failures:
            return (
                {
                    "node": spec.name,
                    "status": "skipped",
                    "reason": "branch_failures",
                    "failures": list(failures),
                },
                None,
                True,
            )
        template = dict(join_call.args or {})
        for name in _fills_of(spec.args_model):
            if name not in template:
                template[name] = (
                    expect if name == "expect"
                    else list(successes) if name == "results"
                    else list(branches) if name == "branches"
                    else [] if name == "failures"
                    else len(successes) if name == "success_count"
                    else 0  # failure_count: a failed branch skips the join
                )  # fmt: skip
        try:
            args = validator(spec.args_model)(template)
        except ValidationError as exc:
            return (
                {
                    "node": spec.name,
                    "error": prompts.render_validation_error(spec.name, errors_json(exc)),
                },
                None,
                True,
            )
        ctx = self._make_ctx(trajectory)
        ctx.meta.update(
            {
                "parallel_results": branches,
                "parallel_success_count": len(successes),
                "parallel_failure_count": len(failures),
                "parallel_input": dict(template),
            }
        )
        outcome = await run_tool(spec, args, ctx)
        tracker.record_hop()
        if not isinstance(outcome, ToolOutcome):
            if self._on_success is not None:
                self._on_success(spec.name, trajectory)
            return {"node": spec.name, "observation": dump_json(outcome)}, None, dumps_json_data(outcome)
        if outcome.pause is not None:
            pause = outcome.pause
            return (
                {
                    "node": spec.name,
                    "pause": {"reason": pause.reason, "payload": dict(pause.payload)},
                },
                pause,
                False,
            )
        join: dict[str, Any] = {"node": spec.name, "error": outcome.error}
        if outcome.failure is not None:
            join["failure"] = dict(outcome.failure)
        return join, None, True
