"""Avtomatika's scheduler names (``avtomatika.scheduler``, ``avtomatika.scheduler_config_loader``) over podium's
native scheduler, :mod:`podium.ops`: one implementation of ``schedules.toml`` (intervals, calendar times, cron,
``TZ``, missed occurrences, once per occurrence across instances).

``OrchestratorEngine.start()`` runs the schedules of ``Config.SCHEDULES_CONFIG_PATH`` (as Avtomatika's engine
does) unless a server gave it its own (``podium serve --schedules``). :func:`load_schedules_from_file` reads a
file into Avtomatika's :class:`ScheduledJobConfig` records, after podium's checks (errors name
``file:line``). ``Scheduler`` is :class:`podium.ops.Scheduler`.

This module is the engine's one door to :mod:`podium.ops` (which builds on the engine): it imports it only
inside functions, when a schedule is asked for.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from podium.engine.engine import OrchestratorEngine
    from podium.ops.scheduler import Scheduler

__all__ = ["ScheduleRunner", "ScheduledJobConfig", "Scheduler", "load_scheduler", "load_schedules_from_file"]


class ScheduleRunner(Protocol):
    """What the engine needs of a scheduler: start and stop with it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class ScheduledJobConfig:
    """One table of ``schedules.toml``, Avtomatika's record of it."""

    name: str
    blueprint: str
    input_data: dict[str, Any]
    interval_seconds: int | None = None
    daily_at: str | None = None
    weekly_days: list[str] | None = None
    monthly_dates: list[int] | None = None
    time: str | None = None
    dispatch_timeout: int | None = None
    result_timeout: int | None = None
    security: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


def load_schedules_from_file(file_path: str | Path) -> list[ScheduledJobConfig]:
    """The blueprint schedules of a ``schedules.toml`` as Avtomatika's records, checked as podium checks them
    (a :class:`~podium.errors.ConfigError` names ``file:line`` and what is wrong)."""
    from podium.ops.schedules import load_schedules

    checked = {s.name for s in load_schedules(file_path) if s.blueprint is not None}
    with open(file_path, "rb") as f:
        tables = tomllib.load(f)
    out = []
    for name, t in tables.items():
        if name not in checked or not isinstance(t, dict):
            continue
        out.append(
            ScheduledJobConfig(
                name=name,
                blueprint=str(t["blueprint"]),
                input_data=dict(t.get("input_data") or t.get("initial_data") or {}),
                interval_seconds=t.get("interval_seconds"),
                daily_at=t.get("daily_at"),
                weekly_days=t.get("weekly_days"),
                monthly_dates=t.get("monthly_dates"),
                time=t.get("time"),
                dispatch_timeout=t.get("dispatch_timeout"),
                result_timeout=t.get("result_timeout"),
                security=t.get("security"),
                metadata=t.get("metadata"),
            )
        )
    return out


def load_scheduler(engine: OrchestratorEngine) -> ScheduleRunner | None:
    """The scheduler of ``Config.SCHEDULES_CONFIG_PATH`` (``None`` when unset); a bad file or an unknown
    blueprint is a :class:`~podium.errors.ConfigError`."""
    path = engine.config.SCHEDULES_CONFIG_PATH
    if not path:
        return None
    from podium.ops.scheduler import Scheduler

    return Scheduler.from_file(engine, path)


def __getattr__(name: str) -> Any:
    if name == "Scheduler":
        from podium.ops.scheduler import Scheduler

        return Scheduler
    raise AttributeError(name)
