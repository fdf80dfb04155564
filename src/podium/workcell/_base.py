"""Shared model bases of the workcell (from :mod:`podium.wire.workcell`) and a time helper."""

from __future__ import annotations

from datetime import UTC, datetime

from podium.clock import Clock, system_clock
from podium.wire.workcell import InputModel, WorkcellModel

__all__ = ["InputModel", "WorkcellModel", "utcnow"]


def utcnow(clock: Clock | None = None) -> datetime:
    """The clock's time as an aware UTC datetime."""
    return datetime.fromtimestamp((clock or system_clock).now(), UTC)
