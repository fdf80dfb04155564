"""The ReAct planner: an LLM picks tools from a catalog step by step until it answers (PenguiFlow's surface).

One run::

    while steps < max_iters:
        deadline passed?              -> finish "budget_exhausted" with the last observation
        action = LLM(prompt + history)   (invalid JSON is repaired, or re-asked with the error)
        action.plan                   -> branches concurrently, then the join (parallel.py)
        action.next_node is None      -> finish "answer_complete" with action.args
        hint or hop-budget violation, unknown tool, invalid args -> an error step the LLM reads next
        run the tool                  -> observation | structured failure | pause
    finish "budget_exhausted" (hops or deadline spent) or "no_path" (iterations spent)

A pause (``await ctx.pause(...)`` inside a tool) ends the run with a :class:`PlannerPause`; its trajectory and
budgets are kept under the resume token, in memory and in the ``state_store`` when it has
``save_planner_state``/``load_planner_state`` (podium's ``StoreStateStore`` on SQLite does), so
``planner.resume(token, user_input)`` works from another process after a restart.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from uuid import uuid4

from pydantic import ValidationError

from .. import _clock
from ..catalog import NodeSpec, build_catalog
from ..node import Node
from ..registry import ModelRegistry
from . import prompts
from .constraints import ConstraintTracker, PlanningHints, check_action, record_hint_progress
from .llm import LiteLLMJSONClient, PlannerLLMError, errors_json, parse_action
from .models import (
    JSONLLMClient,
    ParallelCall,
    ParallelJoin,
    PlannerAction,
    PlannerFinish,
    PlannerPause,
    PlannerPauseReason,
    Trajectory,
    TrajectoryStep,
    TrajectorySummary,
    dumps_json_data,
    validator,
)
from .parallel import ParallelPlan
from .tools import PlannerContext, ToolOutcome, run_tool

__all__ = [
    "JSONLLMClient",
    "ParallelCall",
    "ParallelJoin",
    "PlannerAction",
    "PlannerFinish",
    "PlannerLLMError",
    "PlannerPause",
    "ReactPlanner",
    "Trajectory",
    "TrajectoryStep",
    "TrajectorySummary",
]

FinishReason = Literal["answer_complete", "no_path", "budget_exhausted"]

# the run a tool's code is part of (for planner.pause() called from inside a tool)
_active: contextvars.ContextVar[tuple[Trajectory, ConstraintTracker] | None] = contextvars.ContextVar(
    "podium_flow_planner_run", default=None
)


@dataclass(slots=True)
class _PauseRecord:
    trajectory: Trajectory
    reason: str
    payload: dict[str, Any]
    constraints: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "trajectory": self.trajectory.serialise(),
            "reason": self.reason,
            "payload": dict(self.payload),
            "constraints": dict(self.constraints) if self.constraints is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> _PauseRecord:
        return cls(
            trajectory=Trajectory.from_serialised(data["trajectory"]),
            reason=data.get("reason", "await_input"),
            payload=dict(data.get("payload", {})),
            constraints=data.get("constraints"),
        )


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class ReactPlanner:
    """A JSON-only ReAct loop over a tool catalog.

    Args:
        llm: a LiteLLM model name (or its parameters); needs ``pip install 'podium[llm]'``.
        catalog: ``build_catalog(nodes, registry)``; or give ``nodes`` and ``registry``.
        llm_client: any object with ``async complete(*, messages, response_format=None) -> str`` (scripted,
            offline or custom LLMs); takes precedence over ``llm``.
        max_iters: steps (LLM actions) per run, counted over pauses.
        token_budget: prompt size (characters) past which the history is summarised.
        pause_enabled: whether tools may ``await ctx.pause(...)``.
        state_store: where pauses are kept beyond this process (``save_planner_state``/``load_planner_state``).
        summarizer_llm: a cheaper model that summarises a history too large for ``token_budget``.
        planning_hints: ``ordering_hints``, ``parallel_groups``, ``sequential_only``, ``disallow_nodes``,
            ``prefer_nodes``, ``max_parallel``, ``budget_hints``.
        repair_attempts: LLM calls per step before a reply that is not a valid action is an error.
        deadline_s: wall time for a run (measured with ``time_source``, monotonic seconds).
        hop_budget: tool calls per run, counted over pauses.
    """

    def __init__(
        self,
        llm: str | Mapping[str, Any] | None = None,
        *,
        nodes: Sequence[Node] | None = None,
        catalog: Sequence[NodeSpec] | None = None,
        registry: ModelRegistry | None = None,
        llm_client: JSONLLMClient | None = None,
        max_iters: int = 8,
        temperature: float = 0.0,
        json_schema_mode: bool = True,
        system_prompt_extra: str | None = None,
        token_budget: int | None = None,
        pause_enabled: bool = True,
        state_store: Any | None = None,
        summarizer_llm: str | Mapping[str, Any] | None = None,
        planning_hints: Mapping[str, Any] | None = None,
        repair_attempts: int = 3,
        deadline_s: float | None = None,
        hop_budget: int | None = None,
        time_source: Callable[[], float] | None = None,
    ) -> None:
        if catalog is None:
            if nodes is None or registry is None:
                raise ValueError("Either catalog or (nodes and registry) must be provided")
            catalog = build_catalog(nodes, registry)
        if llm_client is None and llm is None:
            raise ValueError("llm or llm_client must be provided")
        self._specs = list(catalog)
        self._spec_by_name = {spec.name: spec for spec in self._specs}
        self._planning_hints = PlanningHints.from_mapping(planning_hints)
        hints = self._planning_hints
        # what check_action and record_hint_progress read: without any, there is nothing to check per step
        self._ordering_hints = bool(hints.ordering_hints)
        self._no_hints = not (
            hints.ordering_hints
            or hints.disallow_nodes
            or hints.sequential_only
            or hints.max_parallel is not None
        )
        self._system_prompt = prompts.build_system_prompt(
            [spec.to_tool_record() for spec in self._specs],
            extra=system_prompt_extra,
            planning_hints=self._planning_hints.to_prompt_payload() or None,
        )
        self._max_iters = max_iters
        self._repair_attempts = max(repair_attempts, 1)
        self._token_budget = token_budget
        self._pause_enabled = pause_enabled
        self._state_store = state_store
        self._pause_records: dict[str, _PauseRecord] = {}
        self._deadline_s = deadline_s
        self._hop_budget = hop_budget
        self._time_source = time_source or (lambda: _clock.monotonic())
        self._response_format = (
            {
                "type": "json_schema",
                "json_schema": {"name": "planner_action", "schema": PlannerAction.model_json_schema()},
            }
            if json_schema_mode
            else None
        )
        self._client: JSONLLMClient = llm_client or LiteLLMJSONClient(
            llm or "", temperature=temperature, json_schema_mode=json_schema_mode
        )
        self._summarizer_client: JSONLLMClient | None = (
            LiteLLMJSONClient(summarizer_llm, temperature=temperature, json_schema_mode=True)
            if summarizer_llm is not None
            else None
        )
        self._parallel = ParallelPlan(
            self._spec_by_name,
            make_ctx=self._context,
            on_success=self._hint_progress if self._ordering_hints else None,
        )

    # -- the public surface ---------------------------------------------------------------------------------

    async def run(
        self, query: str, *, context_meta: Mapping[str, Any] | None = None
    ) -> PlannerFinish | PlannerPause:
        """Plan and act for ``query`` until an answer, a pause, or a budget; ``context_meta`` reaches ``ctx.meta``."""
        return await self._run_loop(Trajectory(query=query, context_meta=context_meta), tracker=None)

    async def resume(self, token: str, user_input: str | None = None) -> PlannerFinish | PlannerPause:
        """Continue the run paused under ``token`` (``KeyError`` for an unknown token); the LLM sees ``user_input``."""
        record = await self._load_pause_record(token)
        trajectory = record.trajectory
        trajectory.context_meta = trajectory.context_meta or {}
        if user_input is not None:
            trajectory.resume_user_input = user_input
        tracker = None
        if record.constraints is not None:
            tracker = ConstraintTracker.from_snapshot(record.constraints, time_source=self._time_source)
        return await self._run_loop(trajectory, tracker=tracker)

    async def step(self, trajectory: Trajectory) -> PlannerAction:
        """Ask the LLM for the next action; a reply that is not one is repaired or re-asked with the error.

        Raises :class:`PlannerLLMError` (a ``RuntimeError``) when ``repair_attempts`` replies were all invalid.
        """
        base = await self._build_messages(trajectory)
        messages = list(base)  # the client's own list: a repair is built from ``base`` whatever it did
        error = ""
        for _attempt in range(self._repair_attempts):
            raw = await self._client.complete(messages=messages, response_format=self._response_format)
            parsed = parse_action(raw)
            if isinstance(parsed, PlannerAction):
                return parsed
            error = parsed
            messages = [*base, {"role": "system", "content": prompts.render_repair_message(error)}]
        raise PlannerLLMError(
            f"Planner failed to produce valid JSON after repair attempts ({self._repair_attempts}); last error: {error}"
        )

    async def pause(
        self, reason: PlannerPauseReason, payload: Mapping[str, Any] | None = None
    ) -> PlannerPause:
        """Record a pause of the run the caller is part of and return it (the run itself goes on)."""
        active = _active.get()
        if active is None:
            raise RuntimeError("pause() requires an active planner run")
        pause = self._new_pause(reason, dict(payload or {}))
        await self._record_pause(pause, *active)
        return pause

    # -- the loop -------------------------------------------------------------------------------------------

    async def _run_loop(
        self, trajectory: Trajectory, *, tracker: ConstraintTracker | None
    ) -> PlannerFinish | PlannerPause:
        if tracker is None:
            tracker = ConstraintTracker(
                deadline_s=self._deadline_s, hop_budget=self._hop_budget, time_source=self._time_source
            )
        token = _active.set((trajectory, tracker))
        try:
            return await self._loop(trajectory, tracker)
        finally:
            _active.reset(token)

    async def _loop(self, trajectory: Trajectory, tracker: ConstraintTracker) -> PlannerFinish | PlannerPause:
        last_observation: Any = None
        while len(trajectory.steps) < self._max_iters:
            if (deadline := tracker.check_deadline()) is not None:
                return self._finish(trajectory, "budget_exhausted", last_observation, deadline, tracker)
            action = await self.step(trajectory)
            trajectory.summary = None
            if action.plan:
                violation = self._check(action, trajectory, tracker)
                if violation is not None:
                    trajectory.steps.append(TrajectoryStep(action=action, error=violation))
                    continue
                observation, pause = await self._parallel.run(action, trajectory, tracker)
                if pause is not None:
                    await self._record_pause(pause, trajectory, tracker)
                    return pause
                last_observation = observation
                trajectory.resume_user_input = None
                continue
            if action.next_node is None:
                payload = action.args or last_observation
                return self._finish(trajectory, "answer_complete", payload, action.thought, tracker)
            outcome = await self._act(action, trajectory, tracker)
            if isinstance(outcome, PlannerPause):
                return outcome
            if outcome is not _NO_CHANGE:
                last_observation = outcome

        if tracker.deadline_triggered or tracker.hop_exhausted:
            thought = (
                prompts.render_deadline_exhausted()
                if tracker.deadline_triggered
                else prompts.render_hop_budget_violation(self._hop_budget or 0)
            )
            return self._finish(trajectory, "budget_exhausted", last_observation, thought, tracker)
        return self._finish(trajectory, "no_path", last_observation, "iteration limit reached", tracker)

    async def _act(self, action: PlannerAction, trajectory: Trajectory, tracker: ConstraintTracker) -> Any:
        """Run a single-tool action; returns the new last observation, ``_NO_CHANGE``, or a pause."""
        node = action.next_node
        assert node is not None
        error = self._check(action, trajectory, tracker)
        spec = self._spec_by_name.get(node)
        if error is None and spec is None:
            error = prompts.render_invalid_node(node, list(self._spec_by_name))
        if error is None and spec is not None:
            try:
                args = validator(spec.args_model)(action.args or {})
            except ValidationError as exc:
                error = prompts.render_validation_error(spec.name, errors_json(exc))
        if error is not None or spec is None:
            trajectory.steps.append(TrajectoryStep(action=action, error=error))
            return _NO_CHANGE

        outcome = await run_tool(spec, args, self._context(trajectory))
        tracker.record_hop()
        if isinstance(outcome, ToolOutcome):
            if outcome.pause is not None:
                pause = outcome.pause
                observation = {"pause": pause.reason, "payload": pause.payload}
                trajectory.steps.append(TrajectoryStep(action=action, observation=observation))
                await self._record_pause(pause, trajectory, tracker)
                return pause
            trajectory.steps.append(
                TrajectoryStep(action=action, error=outcome.error, failure=outcome.failure)
            )
            return None
        step = TrajectoryStep(action=action, observation=outcome)
        trajectory.steps.append(step)
        if self._ordering_hints:
            self._hint_progress(spec.name, trajectory)
        trajectory.resume_user_input = None
        return step.as_json()[1]  # the observation as JSON data, dumped once for the step and the run

    def _check(self, action: PlannerAction, trajectory: Trajectory, tracker: ConstraintTracker) -> str | None:
        if self._no_hints and tracker.has_budget_for_next_tool():
            return None  # nothing check_action could refuse
        has_budget = tracker.has_budget_for_next_tool()
        limit = self._hop_budget or 0
        return check_action(
            action, trajectory, self._planning_hints, has_hop_budget=has_budget, hop_limit=limit
        )

    def _hint_progress(self, node: str, trajectory: Trajectory) -> None:
        record_hint_progress(self._planning_hints, node, trajectory)

    def _context(self, trajectory: Trajectory) -> PlannerContext:
        return PlannerContext(trajectory.context_meta, self._on_pause)

    async def _on_pause(self, reason: PlannerPauseReason, payload: dict[str, Any]) -> PlannerPause:
        if not self._pause_enabled:
            raise RuntimeError("Pause/resume is disabled for this planner")
        return self._new_pause(reason, payload)

    def _finish(
        self,
        trajectory: Trajectory,
        reason: FinishReason,
        payload: Any,
        thought: str,
        tracker: ConstraintTracker,
    ) -> PlannerFinish:
        metadata = {
            "reason": reason,
            "thought": thought,
            "steps": trajectory.to_history(),
            "step_count": len(trajectory.steps),
            "constraints": tracker.snapshot(),
        }
        return PlannerFinish(reason=reason, payload=payload, metadata=metadata)

    # -- prompts and history --------------------------------------------------------------------------------

    @staticmethod
    def _exchange(step: TrajectoryStep) -> tuple[dict[str, str], dict[str, str]]:
        """The step as the LLM sees it: its action, then what came of it (rendered once per step)."""
        rendered = step.rendered
        if rendered is None:
            action, observation = step.as_json()
            # JSON data as pydantic-core's JSON-mode dumps make it: written by the faster encoder, same text
            if dumps_json_data(step.action):
                said = prompts.encode_json_data(action)
            else:
                said = prompts.encode_json(action)
            if step.observation_is_dumped and step.error is None and not step.failure:
                content = prompts.encode_json_data({"observation": observation})
            else:
                content = prompts.render_observation(
                    observation=observation, error=step.error, failure=step.failure
                )
            rendered = step.rendered = (
                {"role": "assistant", "content": said},
                {"role": "user", "content": content},
            )
        return rendered

    def _head(self, trajectory: Trajectory) -> list[dict[str, str]]:
        """The system prompt and the user's query (with its context, rendered once per run)."""
        cached = trajectory.rendered_query
        if cached is None or cached[0] != trajectory.query or cached[1] is not trajectory.context_meta:
            text = prompts.build_user_prompt(trajectory.query, trajectory.context_meta)
            cached = trajectory.rendered_query = (trajectory.query, trajectory.context_meta, text)
        return [{"role": "system", "content": self._system_prompt}, {"role": "user", "content": cached[2]}]

    def _history(self, trajectory: Trajectory) -> list[dict[str, str]]:
        """The messages of every step so far: the steps added since the last prompt are rendered and appended."""
        steps, covered, history = trajectory.steps, trajectory.history_of, trajectory.history
        done = len(covered)
        if done > len(steps) or (done and steps[done - 1] is not covered[-1]):  # steps were replaced
            covered.clear()
            history.clear()
            trajectory.history_chars = done = 0
        for step in steps[done:]:
            action, observation = self._exchange(step)
            history.append(action)
            history.append(observation)
            covered.append(step)
            trajectory.history_chars += len(action["content"]) + len(observation["content"])
        return history

    async def _build_messages(self, trajectory: Trajectory) -> list[dict[str, str]]:
        head = self._head(trajectory)
        history = self._history(trajectory)
        resume = trajectory.resume_user_input
        tail = [{"role": "user", "content": prompts.render_resume_user_input(resume)}] if resume else []
        budget = self._token_budget
        if budget is None or (
            len(head[0]["content"])
            + len(head[1]["content"])
            + trajectory.history_chars
            + sum(len(m["content"]) for m in tail)
            <= budget
        ):
            head += history
            head += tail
            return head
        condensed = head
        summary = await self._summarise(trajectory)
        condensed.append({"role": "system", "content": prompts.render_summary(summary.compact())})
        if trajectory.steps:
            condensed.extend(self._exchange(trajectory.steps[-1]))
        return condensed + tail

    async def _summarise(self, trajectory: Trajectory) -> TrajectorySummary:
        if trajectory.summary is not None:
            return trajectory.summary
        base = trajectory.compress()
        text = prompts.render_summary(base.compact())
        if (
            self._summarizer_client is not None
            and self._token_budget is not None
            and len(text) > self._token_budget
        ):
            messages = prompts.build_summarizer_messages(
                trajectory.query, trajectory.to_history(), base.compact()
            )
            response_format = {
                "type": "json_schema",
                "json_schema": {
                    "name": "trajectory_summary",
                    "schema": TrajectorySummary.model_json_schema(),
                },
            }
            try:
                raw = await self._summarizer_client.complete(
                    messages=messages, response_format=response_format
                )
                summary = TrajectorySummary.model_validate_json(raw)
            except Exception:  # a summariser failure falls back to the rule-based summary, never ends the run
                base.note = "rule_based_fallback"
            else:
                summary.note = summary.note or "llm"
                trajectory.summary = summary
                return summary
        trajectory.summary = base
        return base

    # -- pauses ---------------------------------------------------------------------------------------------

    def _new_pause(self, reason: PlannerPauseReason, payload: dict[str, Any]) -> PlannerPause:
        return PlannerPause(reason=reason, payload=dict(payload), resume_token=uuid4().hex)

    async def _record_pause(
        self, pause: PlannerPause, trajectory: Trajectory, tracker: ConstraintTracker
    ) -> None:
        record = _PauseRecord(
            trajectory=Trajectory.from_serialised(trajectory.serialise()),
            reason=pause.reason,
            payload=dict(pause.payload),
            constraints=tracker.snapshot(),
        )
        self._pause_records[pause.resume_token] = record
        saver = getattr(self._state_store, "save_planner_state", None)
        if saver is not None:
            await _maybe_await(saver(pause.resume_token, record.to_json()))

    async def _load_pause_record(self, token: str) -> _PauseRecord:
        record = self._pause_records.pop(token, None)
        if record is not None:
            return record
        loader = getattr(self._state_store, "load_planner_state", None)
        data = None if loader is None else await _maybe_await(loader(token))
        if data is None:
            raise KeyError(token)
        return _PauseRecord.from_json(data)


_NO_CHANGE: Any = object()
