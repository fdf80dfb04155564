"""The ReAct planner: an LLM picks tools from a catalog step by step (``penguiflow.planner``'s surface).

Modules: ``react`` (the loop, pauses), ``parallel`` (fan-out and join), ``tools`` (one tool call and its
context), ``constraints`` (planning hints, budgets), ``llm`` (LiteLLM client, reading actions), ``models``
(actions, trajectories, results), ``prompts`` (every text the LLM reads), ``scripted`` (a scripted
LLM client for tests and examples).
"""

from __future__ import annotations

from .react import (
    ParallelCall,
    ParallelJoin,
    PlannerAction,
    PlannerFinish,
    PlannerPause,
    ReactPlanner,
    Trajectory,
    TrajectoryStep,
    TrajectorySummary,
)
from .scripted import ScriptedLLM

__all__ = [
    "ParallelCall",
    "ParallelJoin",
    "PlannerAction",
    "PlannerFinish",
    "PlannerPause",
    "ReactPlanner",
    "ScriptedLLM",
    "Trajectory",
    "TrajectoryStep",
    "TrajectorySummary",
]
