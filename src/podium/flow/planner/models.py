"""The planner's data: the LLM's actions, a run's trajectory, and the two ways a run ends (finish, pause).

Shapes and JSON forms are PenguiFlow 2.2.5's, so a trajectory serialised by either one loads in the other.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

__all__ = [
    "JSONLLMClient",
    "ParallelCall",
    "ParallelJoin",
    "PlannerAction",
    "PlannerFinish",
    "PlannerPause",
    "PlannerPauseReason",
    "Trajectory",
    "TrajectoryStep",
    "TrajectorySummary",
    "dump_json",
    "dumps_json_data",
    "validator",
]

_MODEL_DUMP = BaseModel.model_dump
_MODEL_VALIDATE = BaseModel.model_validate.__func__  # type: ignore[attr-defined]
_validators: dict[type[BaseModel], Callable[[Any], Any]] = {}
_dumpers: dict[type[BaseModel], Callable[[BaseModel], Any]] = {}


def dump_json(model: BaseModel) -> Any:
    """``model.model_dump(mode="json")``, straight to pydantic-core's serializer when the class does not
    override ``model_dump`` (pydantic's method is a wrapper around that one call: same data, a third of the
    time, and the planner dumps several models per step); the call is looked up once per class."""
    dump = _dumpers.get(type(model))
    if dump is None:
        dump = _dumper(type(model))
    return dump(model)


def dumps_json_data(model: BaseModel) -> bool:
    """Whether :func:`dump_json` gives pydantic-core's JSON-mode dump of ``model`` (exact dict, list, str, int,
    float, bool and None, str keys), not what an override of ``model_dump`` returns (any data): true of a
    class in ``_dumpers``, which holds each such class once it has been dumped."""
    return type(model) in _dumpers


def _dumper(cls: type[BaseModel]) -> Callable[[BaseModel], Any]:
    if cls.model_dump is not _MODEL_DUMP:
        return lambda model: model.model_dump(mode="json")
    if not cls.__pydantic_complete__:  # pydantic builds it on first use: asked every time until then
        return lambda model: cls.__pydantic_serializer__.to_python(model, mode="json")
    dump = _dumpers[cls] = _json_mode(cls.__pydantic_serializer__.to_python)
    return dump


def _json_mode(to_python: Callable[..., Any]) -> Callable[[BaseModel], Any]:
    # a closure, not functools.partial(to_python, mode="json"): a partial with keywords calls through a
    # fresh kwargs dict (no vectorcall), which costs a third of dumping a small model
    def dump(model: BaseModel) -> Any:
        return to_python(model, mode="json")

    return dump


def validator(cls: type[BaseModel]) -> Callable[[Any], Any]:
    """``cls.model_validate`` as pydantic-core's ``validate_python`` when ``cls`` does not override it (the same
    call without pydantic's wrapper); looked up once per class."""
    validate = _validators.get(cls)
    if validate is None:
        if getattr(cls.model_validate, "__func__", None) is _MODEL_VALIDATE and cls.__pydantic_complete__:
            validate = _validators[cls] = cls.__pydantic_validator__.validate_python
        else:  # overridden, or not fully defined yet (pydantic's own method rebuilds it): asked every time
            return cls.model_validate
    return validate


class JSONLLMClient(Protocol):
    async def complete(
        self, *, messages: Sequence[Mapping[str, str]], response_format: Mapping[str, Any] | None = None
    ) -> str: ...


class ParallelCall(BaseModel):
    node: str
    args: dict[str, Any] = Field(default_factory=dict)


class ParallelJoin(BaseModel):
    node: str
    args: dict[str, Any] = Field(default_factory=dict)


class PlannerAction(BaseModel):
    thought: str
    next_node: str | None = None
    args: dict[str, Any] | None = None
    plan: list[ParallelCall] | None = None
    join: ParallelJoin | None = None


PlannerPauseReason = Literal["approval_required", "await_input", "external_event", "constraints_conflict"]


class PlannerPause(BaseModel):
    reason: PlannerPauseReason
    payload: dict[str, Any] = Field(default_factory=dict)
    resume_token: str


class PlannerFinish(BaseModel):
    reason: Literal["answer_complete", "no_path", "budget_exhausted"]
    payload: Any = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class TrajectorySummary(BaseModel):
    goals: list[str] = Field(default_factory=list)
    facts: dict[str, Any] = Field(default_factory=dict)
    pending: list[str] = Field(default_factory=list)
    last_output_digest: str | None = None
    note: str | None = None

    def compact(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "goals": list(self.goals),
            "facts": dict(self.facts),
            "pending": list(self.pending),
            "last_output_digest": self.last_output_digest,
        }
        if self.note:
            payload["note"] = self.note
        return payload


@dataclass(slots=True)
class TrajectoryStep:
    action: PlannerAction
    observation: Any | None = None
    error: str | None = None
    failure: Mapping[str, Any] | None = None
    # a step does not change after it joins a trajectory, and every later prompt repeats it: its JSON form
    # (action, observation) is dumped once, and the (action, observation) messages the LLM is shown for it
    # are rendered once
    dumped: tuple[dict[str, Any], Any] | None = field(default=None, init=False, repr=False, compare=False)
    rendered: tuple[dict[str, str], dict[str, str]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    # whether the observation is JSON data that pydantic-core's JSON-mode dumps made (exact dict, list, str,
    # int, float, bool, None; see dumps_json_data): set when as_json dumps it, or by the planner for what it
    # builds from such dumps (a parallel plan's)
    observation_is_dumped: bool = field(default=False, init=False, repr=False, compare=False)

    def as_json(self) -> tuple[dict[str, Any], Any]:
        """(the action, the observation) as JSON data, dumped once."""
        dumped = self.dumped
        if dumped is None:
            observation = self.observation
            if isinstance(observation, BaseModel):
                model = observation
                observation = dump_json(model)
                self.observation_is_dumped = dumps_json_data(model)
            dumped = self.dumped = (dump_json(self.action), observation)
        return dumped

    def serialise_observation(self) -> Any:
        return self.as_json()[1]

    def dump(self) -> dict[str, Any]:
        action, observation = self.as_json()
        return {
            "action": action,
            "observation": observation,
            "error": self.error,
            "failure": dict(self.failure) if self.failure else None,
        }


@dataclass(slots=True)
class Trajectory:
    query: str
    context_meta: Mapping[str, Any] | None = None
    steps: list[TrajectoryStep] = field(default_factory=list)
    summary: TrajectorySummary | None = None
    hint_state: dict[str, Any] = field(default_factory=dict)
    resume_user_input: str | None = None
    # (query, context_meta, rendered user prompt), reused while neither changes
    rendered_query: tuple[str, Any, str] | None = field(default=None, init=False, repr=False, compare=False)
    # the messages of steps[:len(history_of)] as the LLM sees them, grown as steps are appended (each step's
    # are rendered once), and their total characters: a prompt is this list's copy, not a re-rendering
    history: list[dict[str, str]] = field(default_factory=list, init=False, repr=False, compare=False)
    history_of: list[TrajectoryStep] = field(default_factory=list, init=False, repr=False, compare=False)
    history_chars: int = field(default=0, init=False, repr=False, compare=False)

    def to_history(self) -> list[dict[str, Any]]:
        return [step.dump() for step in self.steps]

    def serialise(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "context_meta": dict(self.context_meta or {}),
            "steps": self.to_history(),
            "summary": self.summary.model_dump(mode="json") if self.summary else None,
            "hint_state": dict(self.hint_state),
            "resume_user_input": self.resume_user_input,
        }

    @classmethod
    def from_serialised(cls, payload: Mapping[str, Any]) -> Trajectory:
        trajectory = cls(query=payload["query"], context_meta=payload.get("context_meta"))
        for step in payload.get("steps", []):
            trajectory.steps.append(
                TrajectoryStep(
                    action=PlannerAction.model_validate(step["action"]),
                    observation=step.get("observation"),
                    error=step.get("error"),
                    failure=step.get("failure"),
                )
            )
        if payload.get("summary"):
            trajectory.summary = TrajectorySummary.model_validate(payload["summary"])
        trajectory.hint_state.update(payload.get("hint_state", {}))
        trajectory.resume_user_input = payload.get("resume_user_input")
        return trajectory

    def compress(self) -> TrajectorySummary:
        facts: dict[str, Any] = {}
        last: Any = None
        if self.steps:
            if self.steps[-1].observation is not None:
                last = facts["last_observation"] = self.steps[-1].serialise_observation()
            if self.steps[-1].error:
                facts["last_error"] = self.steps[-1].error
        pending = [f"retry {step.action.next_node or 'finish'}" for step in self.steps if step.error]
        digest = None
        if last is not None:
            raw = json.dumps(last, ensure_ascii=False)
            digest = raw if len(raw) <= 120 else f"{raw[:117]}..."
        self.summary = TrajectorySummary(
            goals=[self.query], facts=facts, pending=pending, last_output_digest=digest, note="rule_based"
        )
        return self.summary
