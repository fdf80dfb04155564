"""podium.workcell: the workcell manager for lab automation, a drop-in for MADSci's.

Describe a workcell (instrument nodes, locations, resources), submit YAML workflows of steps; each run is
durable on podium's store, scheduled on events, and every physical action is journaled by a stable id.
"""

from __future__ import annotations

from podium.workcell.actions import ActionResult, ActionStatus, Error, OwnershipInfo
from podium.workcell.conditions import (
    ExpressionCondition,
    NoResourceInLocationCondition,
    ResourceChildFieldCheckCondition,
    ResourceFieldCheckCondition,
    ResourceInLocationCondition,
)
from podium.workcell.datapoints import DataPoint
from podium.workcell.engine import WorkcellEngine
from podium.workcell.errors import (
    ParameterError,
    UnsafePathError,
    WorkflowNotFoundError,
    WorkflowStateError,
    WorkflowValidationError,
)
from podium.workcell.locations import (
    CapacityCostConfig,
    Location,
    LocationArgument,
    LocationDefinition,
    LocationTransferCapabilities,
    TransferStepTemplate,
    TransferTemplateOverrides,
)
from podium.workcell.nodes import ActionCall, ActionOutcome, InProcessNode, NodeConnector
from podium.workcell.parameters import (
    ParameterFeedForwardFile,
    ParameterFeedForwardJson,
    ParameterInputFile,
    ParameterInputJson,
    WorkflowParameters,
)
from podium.workcell.resources import Resource, ResourceDefinition, ResourceTable, ResourceType
from podium.workcell.scheduler import AbstractScheduler, Claim, Scheduler, WorkcellSnapshot
from podium.workcell.settings import WorkcellManagerSettings
from podium.workcell.workcell import (
    NodeRecord,
    WorkcellDefinition,
    WorkcellInfo,
    WorkcellState,
    load_workcell,
)
from podium.workcell.workflows import (
    SchedulerMetadata,
    Step,
    StepDefinition,
    StepEffect,
    Workflow,
    WorkflowDefinition,
    WorkflowState,
    WorkflowStatus,
    load_workflow_definition,
)

__all__ = [
    "AbstractScheduler",
    "ActionCall",
    "ActionOutcome",
    "ActionResult",
    "ActionStatus",
    "CapacityCostConfig",
    "Claim",
    "DataPoint",
    "Error",
    "ExpressionCondition",
    "InProcessNode",
    "Location",
    "LocationArgument",
    "LocationDefinition",
    "LocationTransferCapabilities",
    "NoResourceInLocationCondition",
    "NodeConnector",
    "NodeRecord",
    "OwnershipInfo",
    "ParameterError",
    "ParameterFeedForwardFile",
    "ParameterFeedForwardJson",
    "ParameterInputFile",
    "ParameterInputJson",
    "Resource",
    "ResourceChildFieldCheckCondition",
    "ResourceDefinition",
    "ResourceFieldCheckCondition",
    "ResourceInLocationCondition",
    "ResourceTable",
    "ResourceType",
    "Scheduler",
    "SchedulerMetadata",
    "Step",
    "StepDefinition",
    "StepEffect",
    "TransferStepTemplate",
    "TransferTemplateOverrides",
    "UnsafePathError",
    "WorkcellDefinition",
    "WorkcellEngine",
    "WorkcellInfo",
    "WorkcellManagerSettings",
    "WorkcellSnapshot",
    "WorkcellState",
    "Workflow",
    "WorkflowDefinition",
    "WorkflowNotFoundError",
    "WorkflowParameters",
    "WorkflowState",
    "WorkflowStateError",
    "WorkflowStatus",
    "WorkflowValidationError",
    "load_workcell",
    "load_workflow_definition",
]
