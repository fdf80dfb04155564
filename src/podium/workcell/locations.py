"""Locations: named places in the workcell, each node knowing it by its own representation (defined in
:mod:`podium.wire.workcell`)."""

from __future__ import annotations

from podium.wire.workcell import (
    CapacityCostConfig,
    Location,
    LocationArgument,
    LocationDefinition,
    LocationTransferCapabilities,
    TransferStepTemplate,
    TransferTemplateOverrides,
)

__all__ = [
    "CapacityCostConfig",
    "Location",
    "LocationArgument",
    "LocationDefinition",
    "LocationTransferCapabilities",
    "TransferStepTemplate",
    "TransferTemplateOverrides",
]
