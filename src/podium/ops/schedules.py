"""``schedules.toml``: Avtomatika's native-scheduler file, read strictly, and when each schedule is due.

One table per schedule (Avtomatika's keys; podium adds ``cron``, ``workflow`` and ``missed``)::

    TZ = "Europe/Berlin"          # optional: the zone of every time below (default: the engine's TZ)
    missed = "once"               # optional: the default missed-occurrence policy (see below)

    [nightly_backup]
    blueprint = "backup_flow"     # or: workflow = "<workcell workflow definition id or name>"
    daily_at = "02:00"
    input_data = {path = "/data"} # or initial_data = {...} (the same thing)
    dispatch_timeout = 60         # seconds; fail if no worker picks a task up in time
    result_timeout = 600

    [every_five_minutes]
    blueprint = "poll_flow"
    interval_seconds = 300        # the first run when the schedule is first seen, then every 300 s

    [reports]
    blueprint = "report_flow"
    weekly_days = ["mon", "thu"]  # with time = "HH:MM" (or daily_at)
    time = "08:30"

    [month_end]
    blueprint = "invoice_flow"
    monthly_dates = [1, 15]       # with time = "HH:MM"; weekly_days too: both must match
    time = "12:00"

    [cron_style]
    blueprint = "cleanup_flow"
    cron = "*/15 9-17 * * mon-fri"  # a cron expression (croniter), in TZ

Exactly one trigger per schedule: ``interval_seconds``, ``daily_at``, ``weekly_days``/``monthly_dates`` with a
time, or ``cron``. Calendar triggers run on local wall time in ``TZ`` (:mod:`zoneinfo`): across a change to
summer time a time that does not exist that day runs at the first minute after the gap, and a time that occurs
twice on the change back runs once, at its first occurrence. ``interval_seconds`` counts real seconds.

**Missed occurrences** (the scheduler was down when they were due), per schedule or for the file:
``"once"`` (the default) runs the latest missed occurrence once, then goes on; ``"skip"`` runs none;
``"all"`` runs each of them (at most :data:`MAX_CATCH_UP`). ``once`` is the default because a periodic job
(a backup, a report) should still happen after an outage, but an outage should not turn into a burst of
identical jobs; it is also what Avtomatika does for interval schedules.

:func:`load_schedules` raises :class:`~podium.errors.ConfigError` as ``file:line: what is wrong`` for the
first problem (unknown key, wrong type, bad time, day or zone, no trigger or two, bad cron expression).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from podium.errors import ConfigError
from podium.tomlfile import header_line, key_line, read_toml, where

__all__ = [
    "MAX_CATCH_UP",
    "CronTrigger",
    "IntervalTrigger",
    "MissedPolicy",
    "Schedule",
    "load_schedules",
    "parse_schedules",
]

MAX_CATCH_UP = 1000
"""The most missed occurrences ``missed = "all"`` runs after one outage (the latest ones)."""

_DAYS = {
    "mon": "mon",
    "tue": "tue",
    "wed": "wed",
    "thu": "thu",
    "fri": "fri",
    "sat": "sat",
    "sun": "sun",
    "monday": "mon",
    "tuesday": "tue",
    "wednesday": "wed",
    "thursday": "thu",
    "friday": "fri",
    "saturday": "sat",
    "sunday": "sun",
}
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_KEYS = frozenset(
    {
        "blueprint",
        "workflow",
        "input_data",
        "initial_data",
        "interval_seconds",
        "daily_at",
        "weekly_days",
        "monthly_dates",
        "time",
        "cron",
        "dispatch_timeout",
        "result_timeout",
        "missed",
        "security",
        "metadata",
    }
)
_TOP_KEYS = frozenset({"TZ", "missed"})


class MissedPolicy(StrEnum):
    """What a scheduler that was down does with the occurrences it missed (see the module docstring)."""

    SKIP = "skip"
    ONCE = "once"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class IntervalTrigger:
    """Every ``seconds``, counted from ``anchor`` (the time the schedule was first seen)."""

    seconds: float

    def next_after(self, t: float, anchor: float) -> float:
        """The first occurrence strictly after ``t``."""
        if t < anchor:
            return anchor
        return anchor + (math.floor((t - anchor) / self.seconds) + 1) * self.seconds

    def describe(self) -> str:
        return f"every {self.seconds:g} s"


@dataclass(frozen=True, slots=True)
class CronTrigger:
    """A cron expression on wall time in ``tz``; ``day_or``: cron's rule that a day matches when either the
    day of the month or the weekday does (a written ``cron``), else both must (``weekly_days`` with
    ``monthly_dates``)."""

    expression: str
    tz: ZoneInfo
    day_or: bool = True
    source: str = ""

    def next_after(self, t: float, anchor: float) -> float:
        """The first occurrence strictly after ``t`` (a repeated wall time runs at its first instant only)."""
        start = datetime.fromtimestamp(t, self.tz)
        it = croniter(self.expression, start, day_or=self.day_or)
        while True:
            nxt: datetime = it.get_next(datetime)
            ts = nxt.timestamp()
            if ts <= t:
                continue
            wall = nxt.replace(tzinfo=None)
            first = wall.replace(tzinfo=self.tz, fold=0).timestamp()
            if first < ts and wall.replace(tzinfo=self.tz, fold=1).timestamp() == ts:
                continue  # the second pass of an hour repeated by the change back from summer time
            return ts

    def describe(self) -> str:
        return self.source or f"cron {self.expression!r}"


Trigger = IntervalTrigger | CronTrigger


@dataclass(frozen=True, slots=True)
class Schedule:
    """One validated entry of ``schedules.toml``: what to run (a blueprint or a workcell workflow), when, and
    with what. ``line`` is where its table starts (for later errors, e.g. an unknown blueprint)."""

    name: str
    trigger: Trigger
    blueprint: str | None = None
    workflow: str | None = None
    initial_data: Mapping[str, Any] = field(default_factory=dict)
    dispatch_timeout: float | None = None
    result_timeout: float | None = None
    missed: MissedPolicy = MissedPolicy.ONCE
    metadata: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None
    line: int | None = None

    @property
    def target(self) -> str:
        """``blueprint:<name>`` or ``workflow:<name>``."""
        return f"blueprint:{self.blueprint}" if self.blueprint is not None else f"workflow:{self.workflow}"

    @property
    def where(self) -> str:
        """``path:line`` of the schedule's table."""
        return where(self.path, self.line) if self.path is not None else f"schedule {self.name!r}"

    def next_after(self, t: float, anchor: float) -> float:
        """The first occurrence strictly after ``t`` (``anchor``: when an interval schedule started)."""
        return self.trigger.next_after(t, anchor)

    def due(self, after: float, until: float, anchor: float, *, limit: int = MAX_CATCH_UP) -> list[float]:
        """Occurrences in ``(after, until]``, the latest ``limit`` of them, oldest first."""
        out: list[float] = []
        for ts in self._iter(after, anchor):
            if ts > until:
                break
            out.append(ts)
            if len(out) > limit:
                del out[0]
        return out

    def _iter(self, after: float, anchor: float) -> Iterator[float]:
        t = after
        while True:
            t = self.trigger.next_after(t, anchor)
            yield t


def load_schedules(path: str | Path, *, tz: str = "UTC") -> list[Schedule]:
    """Read and validate ``schedules.toml`` (see the module docstring); ``tz``: the zone when the file sets
    no ``TZ`` (the engine's ``Config.TZ``). Raises :class:`ConfigError` as ``file:line: what is wrong``."""
    path = Path(path)
    text, data = read_toml(path, "schedules")
    return parse_schedules(text, data, path=path, tz=tz)


def parse_schedules(text: str, data: Mapping[str, Any], *, path: Path, tz: str = "UTC") -> list[Schedule]:
    """Validate the parsed content ``data`` of the file at ``path`` (whose ``text`` gives the lines)."""
    top = {k: v for k, v in data.items() if not isinstance(v, dict)}
    for key in top:
        if key not in _TOP_KEYS:
            raise ConfigError(
                f"{where(path, key_line(text, 0, key))}: unknown top-level key {key!r} "
                f"(expected a [schedule] table, TZ or missed)"
            )
    zone_name = top.get("TZ", tz)
    zone = _zone(zone_name, f"{where(path, key_line(text, 0, 'TZ'))}: TZ")
    default_missed = _missed(top.get("missed", "once"), f"{where(path, key_line(text, 0, 'missed'))}: missed")
    out = []
    for name, table in data.items():
        if isinstance(table, dict):
            out.append(_schedule(text, path, name, table, zone, default_missed))
    return out


def _zone(name: Any, what: str) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{what} must be a time zone name like 'Europe/Berlin', got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{what}: unknown time zone {name!r}") from None


def _missed(value: Any, what: str) -> MissedPolicy:
    try:
        return MissedPolicy(value)
    except ValueError:
        raise ConfigError(f"{what} must be one of 'skip', 'once', 'all', got {value!r}") from None


class _Table:
    """One schedule's table and where its keys are, for messages."""

    def __init__(self, text: str, path: Path, name: str, table: dict[str, Any]) -> None:
        self.text, self.path, self.name, self.table = text, path, name, table
        self.line = header_line(text, name)

    def at(self, key: str | None = None) -> str:
        line = key_line(self.text, self.line, key) if key else self.line
        return f"{where(self.path, line)}: schedule '{self.name}'"

    def fail(self, key: str | None, message: str) -> ConfigError:
        field_ = f": field '{key}'" if key else ""
        return ConfigError(f"{self.at(key)}{field_} {message}")

    def number(self, key: str) -> float | None:
        value = self.table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise self.fail(key, f"must be a positive number of seconds, got {value!r}")
        return float(value)

    def text_value(self, key: str) -> str | None:
        value = self.table.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise self.fail(key, f"must be a non-empty string, got {value!r}")
        return value

    def mapping(self, key: str) -> dict[str, Any] | None:
        value = self.table.get(key)
        if value is not None and not isinstance(value, dict):
            raise self.fail(key, f"must be a table, got {value!r}")
        return value

    def time(self, key: str) -> tuple[int, int]:
        value = self.table.get(key)
        match = _TIME.match(value) if isinstance(value, str) else None
        if match is None:
            raise self.fail(key, f"must be a time 'HH:MM' (00:00 to 23:59), got {value!r}")
        return int(match.group(1)), int(match.group(2))


def _schedule(
    text: str, path: Path, name: str, table: dict[str, Any], zone: ZoneInfo, default_missed: MissedPolicy
) -> Schedule:
    t = _Table(text, path, name, table)
    for key in table:
        if key not in _KEYS:
            raise t.fail(None, f"has an unknown key {key!r} (expected one of {', '.join(sorted(_KEYS))})")
    blueprint, workflow = t.text_value("blueprint"), t.text_value("workflow")
    if (blueprint is None) == (workflow is None):
        raise t.fail(None, "needs exactly one of 'blueprint' or 'workflow' (what to run)")
    if "input_data" in table and "initial_data" in table:
        raise t.fail("initial_data", "duplicates 'input_data' (give one of them)")
    data_key = "initial_data" if "initial_data" in table else "input_data"
    initial_data = t.mapping(data_key) or {}
    dispatch_timeout, result_timeout = t.number("dispatch_timeout"), t.number("result_timeout")
    if workflow is not None and (dispatch_timeout is not None or result_timeout is not None):
        key = "dispatch_timeout" if dispatch_timeout is not None else "result_timeout"
        raise t.fail(key, "applies to blueprints only (a workflow's steps have their own timeouts)")
    missed = _missed(table["missed"], f"{t.at('missed')}: field 'missed'") if "missed" in table else None
    metadata = t.mapping("metadata") or {}
    t.mapping("security")
    return Schedule(
        name=name,
        trigger=_trigger(t, zone),
        blueprint=blueprint,
        workflow=workflow,
        initial_data=initial_data,
        dispatch_timeout=dispatch_timeout,
        result_timeout=result_timeout,
        missed=missed or default_missed,
        metadata=metadata,
        path=path,
        line=t.line,
    )


def _trigger(t: _Table, zone: ZoneInfo) -> Trigger:
    table = t.table
    calendar = [k for k in ("daily_at", "weekly_days", "monthly_dates") if k in table]
    given = [k for k in ("interval_seconds", "cron") if k in table] + (["calendar"] if calendar else [])
    if len(given) != 1:
        found = ", ".join(k for k in ("interval_seconds", "cron", *calendar) if k in table) or "none"
        raise t.fail(
            None,
            "needs exactly one trigger: interval_seconds, daily_at, weekly_days/monthly_dates with time, or cron"
            f" (got {found})",
        )
    if "daily_at" in table and "time" in table:
        raise t.fail("time", "duplicates 'daily_at' (give one time)")
    if "interval_seconds" in table:
        seconds = t.number("interval_seconds")
        assert seconds is not None
        if "time" in table:
            raise t.fail("time", "applies to weekly_days/monthly_dates only")
        return IntervalTrigger(seconds)
    if "cron" in table:
        expression = t.text_value("cron")
        assert expression is not None
        if "time" in table:
            raise t.fail("time", "applies to weekly_days/monthly_dates only")
        if not croniter.is_valid(expression) or len(expression.split()) != 5:
            raise t.fail("cron", f"is not a valid five-field cron expression: {expression!r}")
        return CronTrigger(expression, zone, True, f"cron {expression!r}")
    time_key = "daily_at" if "daily_at" in table else "time"
    if time_key not in table:
        raise t.fail(None, f"{' and '.join(calendar)} needs time = 'HH:MM'")
    hour, minute = t.time(time_key)
    days, dates = "*", "*"
    if "weekly_days" in table:
        days = ",".join(_weekdays(t))
    if "monthly_dates" in table:
        dates = ",".join(str(d) for d in _dates(t))
    expression = f"{minute} {hour} {dates} * {days}"
    return CronTrigger(expression, zone, False, _describe(table, hour, minute))


def _weekdays(t: _Table) -> list[str]:
    value = t.table["weekly_days"]
    if not isinstance(value, list) or not value:
        raise t.fail("weekly_days", f"must be a non-empty list of days like ['mon', 'thu'], got {value!r}")
    out = []
    for day in value:
        short = _DAYS.get(day.lower()) if isinstance(day, str) else None
        if short is None:
            raise t.fail("weekly_days", f"has an unknown day {day!r} (mon, tue, wed, thu, fri, sat, sun)")
        out.append(short)
    return out


def _dates(t: _Table) -> list[int]:
    value = t.table["monthly_dates"]
    if not isinstance(value, list) or not value:
        raise t.fail("monthly_dates", f"must be a non-empty list of days of the month, got {value!r}")
    for d in value:
        if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 31:
            raise t.fail("monthly_dates", f"has {d!r}: days of the month are 1 to 31")
    return sorted(set(value))


def _describe(table: Mapping[str, Any], hour: int, minute: int) -> str:
    at = f"{hour:02d}:{minute:02d}"
    parts = []
    if "weekly_days" in table:
        parts.append("on " + ", ".join(str(d) for d in table["weekly_days"]))
    if "monthly_dates" in table:
        parts.append("on day " + ", ".join(str(d) for d in table["monthly_dates"]))
    return f"{' '.join(parts) or 'daily'} at {at}"
