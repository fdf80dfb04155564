"""Action results and errors, shaped as MADSci's ``action_types`` (defined in :mod:`podium.wire.workcell`)."""

from __future__ import annotations

from podium.wire.workcell import ActionResult, ActionStatus, Error, OwnershipInfo

__all__ = ["ActionResult", "ActionStatus", "Error", "OwnershipInfo"]
