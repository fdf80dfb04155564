"""Locations: named places in the workcell, each node knowing it by its own representation (defined in
:mod:`podium.wire.workcell`)."""

from __future__ import annotations

from podium.wire.workcell._locations import Location, LocationArgument, LocationDefinition

__all__ = ["Location", "LocationArgument", "LocationDefinition"]
