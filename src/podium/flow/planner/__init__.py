"""Planner entry points (the ReAct loop itself is a later issue)."""

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
