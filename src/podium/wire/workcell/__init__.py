"""The workcell's wire models, shared by the workcell manager, its REST API and ``WorkcellClient``.

MADSci-shaped (0.7 and 0.8 forms accepted): workflow and step definitions, workflow runs and their
statuses, parameters, conditions (as data), locations, resources (as data), datapoints, the workcell's
state and nodes, action results, and the workcell's error tree. Imports only pydantic, PyYAML, the
standard library and podium's foundation (``podium.ids``, ``podium.errors``), so a client that reads
these does not load the workcell runtime or a store. ``podium.workcell`` re-exports every name.
"""

from __future__ import annotations

from podium.wire.workcell._actions import ActionResult, ActionStatus, Error, OwnershipInfo
from podium.wire.workcell._base import InputModel, WorkcellModel
from podium.wire.workcell._conditions import (
    Condition,
    Conditions,
    ExpressionCondition,
    GridKey,
    NoResourceInLocationCondition,
    Operator,
    ParsedExpression,
    ResourceChildFieldCheckCondition,
    ResourceFieldCheckCondition,
    ResourceInLocationCondition,
    parse_expression,
)
from podium.wire.workcell._datapoints import DataPoint
from podium.wire.workcell._errors import (
    ParameterError,
    UnsafePathError,
    WorkflowNotFoundError,
    WorkflowStateError,
    WorkflowValidationError,
)
from podium.wire.workcell._locations import (
    CapacityCostConfig,
    Location,
    LocationArgument,
    LocationDefinition,
    LocationTransferCapabilities,
    TransferStepTemplate,
    TransferTemplateOverrides,
)
from podium.wire.workcell._parameters import (
    ParameterFeedForwardFile,
    ParameterFeedForwardJson,
    ParameterInputFile,
    ParameterInputJson,
    ParameterTypes,
    WorkflowParameters,
    coerce_parameter,
    find_references,
    substitute,
)
from podium.wire.workcell._resources import (
    CONSUMABLE_TYPES,
    CONTAINER_TYPES,
    LOCATION_CONTAINER_TEMPLATE,
    Resource,
    ResourceDefinition,
    ResourceTemplate,
    ResourceType,
)
from podium.wire.workcell._workcell import (
    NodeRecord,
    WorkcellDefinition,
    WorkcellInfo,
    WorkcellState,
    WorkcellStatus,
)
from podium.wire.workcell._workflows import (
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
    "CONSUMABLE_TYPES",
    "CONTAINER_TYPES",
    "LOCATION_CONTAINER_TEMPLATE",
    "ActionResult",
    "ActionStatus",
    "CapacityCostConfig",
    "Condition",
    "Conditions",
    "DataPoint",
    "Error",
    "ExpressionCondition",
    "GridKey",
    "InputModel",
    "Location",
    "LocationArgument",
    "LocationDefinition",
    "LocationTransferCapabilities",
    "NoResourceInLocationCondition",
    "NodeRecord",
    "Operator",
    "OwnershipInfo",
    "ParameterError",
    "ParameterFeedForwardFile",
    "ParameterFeedForwardJson",
    "ParameterInputFile",
    "ParameterInputJson",
    "ParameterTypes",
    "ParsedExpression",
    "Resource",
    "ResourceChildFieldCheckCondition",
    "ResourceDefinition",
    "ResourceFieldCheckCondition",
    "ResourceInLocationCondition",
    "ResourceTemplate",
    "ResourceType",
    "SchedulerMetadata",
    "Step",
    "StepDefinition",
    "StepEffect",
    "StepParameters",
    "TransferStepTemplate",
    "TransferTemplateOverrides",
    "UnsafePathError",
    "WorkcellDefinition",
    "WorkcellInfo",
    "WorkcellModel",
    "WorkcellState",
    "WorkcellStatus",
    "Workflow",
    "WorkflowDefinition",
    "WorkflowMetadata",
    "WorkflowNotFoundError",
    "WorkflowParameters",
    "WorkflowState",
    "WorkflowStateError",
    "WorkflowStatus",
    "WorkflowValidationError",
    "coerce_parameter",
    "find_references",
    "load_workflow_definition",
    "parse_expression",
    "substitute",
]
