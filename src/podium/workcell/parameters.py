"""Workflow parameters and ``${name}`` substitution (defined in :mod:`podium.wire.workcell`)."""

from __future__ import annotations

from podium.wire.workcell import (
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

__all__ = [
    "ParameterFeedForwardFile",
    "ParameterFeedForwardJson",
    "ParameterInputFile",
    "ParameterInputJson",
    "ParameterTypes",
    "WorkflowParameters",
    "coerce_parameter",
    "find_references",
    "substitute",
]
