"""Workflows and steps as MADSci defines them, plus YAML loading (defined in :mod:`podium.wire.workcell`)."""

from __future__ import annotations

from podium.wire.workcell import (
    SchedulerMetadata,
    Step,
    StepDefinition,
    StepEffect,
    StepParameters,
    Workflow,
    WorkflowDefinition,
    WorkflowMetadata,
    WorkflowState,
    WorkflowStatus,
    load_workflow_definition,
)

__all__ = [
    "SchedulerMetadata",
    "Step",
    "StepDefinition",
    "StepEffect",
    "StepParameters",
    "Workflow",
    "WorkflowDefinition",
    "WorkflowMetadata",
    "WorkflowState",
    "WorkflowStatus",
    "load_workflow_definition",
]
