"""Scheduled jobs from ``schedules.toml`` (Avtomatika's native scheduler, ``avtomatika.scheduler``).

``Config.SCHEDULES_CONFIG_PATH`` names a TOML file; each table is one schedule::

    [nightly_backup]
    blueprint = "backup_flow"
    daily_at = "02:00"          # or interval_seconds = 3600, or weekly_days = ["mon"] / monthly_dates = [1]
    time = "02:00"              #   with time = "HH:MM"
    input_data = { full = true }
    dispatch_timeout = 60       # optional, seconds; result_timeout too

``engine.start()`` loads it (a bad file or an unknown blueprint is a :class:`~podium.errors.ConfigError`
naming the table and the field) and runs a :class:`Scheduler` on the engine's clock: calendar times are in
``Config.TZ``; an interval schedule fires at the start of each ``interval_seconds`` slot counted from the
Unix epoch (so the current slot fires at start-up). Each firing takes a store lock named after the schedule
and its slot time, so several engine instances on one store create the job once. :func:`next_fire` is the
pure calendar rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from podium.errors import ConfigError

if TYPE_CHECKING:
    from podium.engine.engine import OrchestratorEngine

__all__ = ["ScheduledJobConfig", "Scheduler", "load_schedules_from_file", "next_fire"]

log = logging.getLogger("podium.engine.scheduler")

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_LOCK_TTL_S = 86400.0


@dataclass(frozen=True)
class ScheduledJobConfig:
    """One schedule (a table of ``schedules.toml``); exactly one of the four kinds is set."""

    name: str
    blueprint: str
    input_data: dict[str, Any] = field(default_factory=dict)
    interval_seconds: int | None = None
    daily_at: str | None = None
    weekly_days: list[str] | None = None
    monthly_dates: list[int] | None = None
    time: str | None = None
    dispatch_timeout: float | None = None
    result_timeout: float | None = None


def _parse(name: str, table: Any, where: str) -> ScheduledJobConfig:
    def bad(field_: str, why: str) -> ConfigError:
        return ConfigError(f"{where}: [{name}] {field_}: {why}")

    if not isinstance(table, dict):
        raise bad("(table)", "each schedule is a table")
    known = set(ScheduledJobConfig.__dataclass_fields__) - {"name"}
    for key in table:
        if key not in known:
            raise bad(key, f"unknown field (known: {', '.join(sorted(known))})")
    if not isinstance(table.get("blueprint"), str) or not table["blueprint"]:
        raise bad("blueprint", "required, the name of a blueprint")
    if not isinstance(table.get("input_data", {}), dict):
        raise bad("input_data", "must be a table")
    kinds = [k for k in ("interval_seconds", "daily_at", "weekly_days", "monthly_dates") if k in table]
    if len(kinds) != 1:
        raise bad(
            "interval_seconds", "set exactly one of interval_seconds, daily_at, weekly_days, monthly_dates"
        )
    interval = table.get("interval_seconds")
    if interval is not None and (not isinstance(interval, int) or isinstance(interval, bool) or interval < 1):
        raise bad("interval_seconds", "a whole number of seconds >= 1")
    for key in ("daily_at", "time"):
        if key in table and (not isinstance(table[key], str) or not _HHMM.match(table[key])):
            raise bad(key, 'a time "HH:MM"')
    if ("weekly_days" in table or "monthly_dates" in table) and "time" not in table:
        raise bad("time", 'required with weekly_days / monthly_dates ("HH:MM")')
    days = table.get("weekly_days")
    if days is not None and (not days or any(not isinstance(d, str) or d.lower() not in DAYS for d in days)):
        raise bad("weekly_days", f"a list of {', '.join(DAYS)}")
    dates = table.get("monthly_dates")
    if dates is not None and (not dates or any(not isinstance(d, int) or not 1 <= d <= 31 for d in dates)):
        raise bad("monthly_dates", "a list of days of the month, 1-31")
    for key in ("dispatch_timeout", "result_timeout"):
        value = table.get(key)
        if value is not None and (
            not isinstance(value, int | float) or isinstance(value, bool) or value <= 0
        ):
            raise bad(key, "seconds > 0")
    return ScheduledJobConfig(
        name=name,
        blueprint=table["blueprint"],
        input_data=dict(table.get("input_data", {})),
        interval_seconds=interval,
        daily_at=table.get("daily_at"),
        weekly_days=[d.lower() for d in days] if days else None,
        monthly_dates=list(dates) if dates else None,
        time=table.get("time"),
        dispatch_timeout=table.get("dispatch_timeout"),
        result_timeout=table.get("result_timeout"),
    )


def load_schedules_from_file(path: str | Path) -> list[ScheduledJobConfig]:
    """Read ``schedules.toml``; :class:`ConfigError` names the file, the table and the field."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the schedules file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return [_parse(name, table, str(path)) for name, table in data.items()]


def next_fire(job: ScheduledJobConfig, after: datetime) -> datetime:
    """The first calendar firing strictly after ``after`` (an aware datetime; the result has its zone)."""
    hhmm = job.daily_at or job.time
    if hhmm is None:
        raise ValueError(f"schedule {job.name!r} is not a calendar schedule")
    at = time(int(hhmm[:2]), int(hhmm[3:]))
    day: date = after.date()
    for _ in range(400):
        candidate = datetime.combine(day, at, tzinfo=after.tzinfo)
        weekday_ok = job.weekly_days is None or DAYS[day.weekday()] in job.weekly_days
        date_ok = job.monthly_dates is None or day.day in job.monthly_dates
        if candidate > after and weekday_ok and date_ok:
            return candidate
        day += timedelta(days=1)
    raise ValueError(f"schedule {job.name!r} never fires")  # pragma: no cover - dates 1-31 always occur


class Scheduler:
    """Creates the scheduled jobs of one engine on its clock (see the module docstring)."""

    def __init__(self, engine: OrchestratorEngine, schedules: list[ScheduledJobConfig]) -> None:
        self.engine = engine
        self.schedules = schedules
        try:
            self.timezone = ZoneInfo(engine.config.TZ)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"TZ: unknown time zone {engine.config.TZ!r}") from None
        self._task: asyncio.Task[None] | None = None
        self._held: dict[str, list[tuple[str, int]]] = {}  # schedule -> the slot locks this instance holds

    def first_due(self, job: ScheduledJobConfig, now: float) -> float:
        """When ``job`` fires first after start-up at ``now``: the current interval slot, or the next
        calendar time."""
        if job.interval_seconds:
            return float(now // job.interval_seconds * job.interval_seconds)
        return next_fire(job, datetime.fromtimestamp(now, self.timezone)).timestamp()

    def following(self, job: ScheduledJobConfig, fired_at: float) -> float:
        """When ``job`` fires after firing at ``fired_at``."""
        if job.interval_seconds:
            return fired_at + job.interval_seconds
        return next_fire(job, datetime.fromtimestamp(fired_at, self.timezone)).timestamp()

    async def fire(self, job: ScheduledJobConfig, slot: float) -> str | None:
        """Create the job of ``slot`` unless another instance did; return its id (``None`` if not created)."""
        lock = f"schedule:{job.name}:{int(slot)}"
        store, owner = self.engine.storage, self.engine.instance_id
        ttl_s = job.interval_seconds * 3 + 60.0 if job.interval_seconds else _LOCK_TTL_S
        token = await store.acquire_lock(lock, owner, ttl_s=ttl_s)
        if token is None:
            return None
        # Keep the locks of this slot and the one before (another instance may still be about to try them);
        # release older ones so that the store does not keep one lock per firing for ever.
        held = self._held.setdefault(job.name, [])
        held.append((lock, token))
        while len(held) > 2:
            old, old_token = held.pop(0)
            await store.release_lock(old, owner, old_token)
        try:
            job_id = await self.engine.create_job(
                job.blueprint,
                dict(job.input_data),
                dispatch_timeout=job.dispatch_timeout,
                result_timeout=job.result_timeout,
            )
        except Exception:
            log.exception("scheduled job %r: creating a %r job failed", job.name, job.blueprint)
            return None
        log.info("scheduled job %r created job %s", job.name, job_id, extra={"job_id": job_id})
        return str(job_id)

    async def run(self, started_at: float | None = None) -> None:
        """Fire every schedule when due (counted from ``started_at``, default now), until cancelled."""
        if not self.schedules:
            return
        clock = self.engine.clock
        now = clock.now() if started_at is None else started_at
        due = {job.name: self.first_due(job, now) for job in self.schedules}
        by_name = {job.name: job for job in self.schedules}
        while True:
            now = clock.now()
            for name, at in list(due.items()):
                if at <= now:
                    await self.fire(by_name[name], at)
                    due[name] = self.following(by_name[name], at)
            await clock.sleep(max(0.0, min(due.values()) - clock.now()))

    def start(self) -> None:
        """Run :meth:`run` in the background (idempotent)."""
        if self._task is None and self.schedules:
            started_at = (
                self.engine.clock.now()
            )  # the start-up slot is the one of start(), not of the first run
            self._task = asyncio.get_running_loop().create_task(self.run(started_at), name="podium-scheduler")

    async def stop(self) -> None:
        """Stop firing (idempotent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def load_scheduler(engine: OrchestratorEngine) -> Scheduler | None:
    """The scheduler for ``Config.SCHEDULES_CONFIG_PATH`` (``None`` when unset); unknown blueprints refused."""
    path = engine.config.SCHEDULES_CONFIG_PATH
    if not path:
        return None
    schedules = load_schedules_from_file(path)
    for job in schedules:
        if job.blueprint not in engine.blueprints:
            raise ConfigError(f"{path}: [{job.name}] blueprint: no blueprint named {job.blueprint!r}")
    return Scheduler(engine, schedules)
