"""Models of the ReAct planner (``penguiflow.planner`` compatible surface).

The LLM-driven loop itself (:meth:`ReactPlanner.run`) is not implemented yet; the models, the
trajectory bookkeeping and the constructor's catalog handling are, so code that builds a planner imports
and type-checks unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from ..catalog import NodeSpec, build_catalog
from ..node import Node
from ..registry import ModelRegistry

__all__ = [
    "ParallelCall",
    "ParallelJoin",
    "PlannerAction",
    "PlannerFinish",
    "PlannerPause",
    "ReactPlanner",
    "Trajectory",
    "TrajectoryStep",
    "TrajectorySummary",
]


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


class PlannerPause(BaseModel):
    reason: Literal["approval_required", "await_input", "external_event", "constraints_conflict"]
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

    def serialise_observation(self) -> Any:
        if isinstance(self.observation, BaseModel):
            return self.observation.model_dump(mode="json")
        return self.observation

    def dump(self) -> dict[str, Any]:
        return {
            "action": self.action.model_dump(mode="json"),
            "observation": self.serialise_observation(),
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


class ReactPlanner:
    """An LLM-driven ReAct planner over a tool catalog (the run loop is not implemented yet)."""

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
        if llm is None and llm_client is None:
            raise ValueError("llm or llm_client must be provided")
        self._specs = list(catalog)
        self._spec_by_name = {spec.name: spec for spec in self._specs}
        self._llm = llm
        self._client = llm_client
        self._max_iters = max_iters
        self._hop_budget = hop_budget
        self._deadline_s = deadline_s
        self._token_budget = token_budget

    async def run(self, query: str, *, context_meta: Mapping[str, Any] | None = None) -> PlannerFinish:
        raise NotImplementedError("podium.flow.planner.ReactPlanner.run is not implemented yet")
