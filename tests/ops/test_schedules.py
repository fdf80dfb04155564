"""schedules.toml: strict validation with file:line, and when each kind of trigger is due (DST included)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from podium.errors import ConfigError
from podium.ops.schedules import CronTrigger, IntervalTrigger, MissedPolicy, load_schedules

BERLIN = ZoneInfo("Europe/Berlin")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schedules.toml"
    path.write_text(text)
    return path


def local(*args: int) -> float:
    return datetime(*args, tzinfo=BERLIN).timestamp()  # type: ignore[misc]


def test_avtomatika_example_and_every_trigger(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """TZ = "Europe/Berlin"
missed = "all"

[nightly_backup]
blueprint = "backup_flow"
daily_at = "02:00"
dispatch_timeout = 60 # Fail if no worker picks it up within 1 minute

[poll]
blueprint = "poll_flow"
interval_seconds = 300
input_data = {source = "a"}
missed = "skip"

[reports]
blueprint = "report_flow"
weekly_days = ["mon", "Thursday"]
time = "08:30"
initial_data = {kind = "weekly"}

[month]
workflow = "invoice"
monthly_dates = [15, 1]
time = "12:00"

[cronish]
blueprint = "c"
cron = "*/15 9-17 * * mon-fri"
""",
    )
    s = {x.name: x for x in load_schedules(path)}
    assert s["nightly_backup"].trigger == CronTrigger("0 2 * * *", BERLIN, False, "daily at 02:00")
    assert s["nightly_backup"].dispatch_timeout == 60.0 and s["nightly_backup"].missed is MissedPolicy.ALL
    assert s["nightly_backup"].line == 4
    assert s["poll"].trigger == IntervalTrigger(300.0) and s["poll"].initial_data == {"source": "a"}
    assert s["poll"].missed is MissedPolicy.SKIP
    assert s["reports"].trigger.expression == "30 8 * * mon,thu"  # type: ignore[union-attr]
    assert s["reports"].initial_data == {"kind": "weekly"}
    assert s["month"].workflow == "invoice" and s["month"].target == "workflow:invoice"
    assert s["month"].trigger.expression == "0 12 1,15 * *"  # type: ignore[union-attr]
    assert s["cronish"].trigger.day_or is True  # type: ignore[union-attr]


def test_tz_defaults_to_the_engine_zone(tmp_path: Path) -> None:
    path = write(tmp_path, '[a]\nblueprint = "b"\ndaily_at = "09:00"\n')
    (a,) = load_schedules(path, tz="America/New_York")
    assert a.trigger.tz == ZoneInfo("America/New_York")  # type: ignore[union-attr]
    assert a.missed is MissedPolicy.ONCE


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ('[a]\nblueprint = "b"\n\ndaily_at = "25:00"\n', ":4:", "field 'daily_at' must be a time 'HH:MM'"),
        ('[a]\nblueprint = "b"\n', ":1:", "needs exactly one trigger"),
        ('[a]\nblueprint = "b"\ndaily_at = "01:00"\ncron = "* * * * *"\n', ":1:", "got cron, daily_at"),
        ('[a]\ndaily_at = "01:00"\n', ":1:", "exactly one of 'blueprint' or 'workflow'"),
        ('[a]\nblueprint = "b"\ndaily_at = "01:00"\nbogus = 1\n', ":1:", "unknown key 'bogus'"),
        ('[a]\nblueprint = "b"\ninterval_seconds = -5\n', ":3:", "positive number of seconds"),
        ('[a]\nblueprint = "b"\ninterval_seconds = true\n', ":3:", "positive number of seconds"),
        ('[a]\nblueprint = "b"\nweekly_days = ["mon", "funday"]\ntime = "10:00"\n', ":3:", "'funday'"),
        ('[a]\nblueprint = "b"\nweekly_days = ["mon"]\n', ":1:", "weekly_days needs time"),
        ('[a]\nblueprint = "b"\nmonthly_dates = [0]\ntime = "10:00"\n', ":3:", "1 to 31"),
        ('[a]\nblueprint = "b"\ncron = "61 * * * *"\n', ":3:", "not a valid five-field cron"),
        ('[a]\nblueprint = "b"\ncron = "0 0 * * * *"\n', ":3:", "not a valid five-field cron"),
        ('[a]\nblueprint = "b"\ndaily_at = "01:00"\nmissed = "later"\n', ":4:", "'skip', 'once', 'all'"),
        ('TZ = "Mars/Olympus"\n[a]\nblueprint = "b"\ndaily_at = "01:00"\n', ":1:", "unknown time zone"),
        ('zone = "UTC"\n', ":1:", "unknown top-level key 'zone'"),
        ('[a]\nblueprint = "b"\ndaily_at = "01:00"\ninput_data = 3\n', ":4:", "must be a table"),
        ('[a]\nworkflow = "w"\ndaily_at = "01:00"\nresult_timeout = 5\n', ":4:", "blueprints only"),
        ('[a]\nblueprint = "b"\ndaily_at = "01:00"\ntime = "02:00"\n', ":4:", "duplicates 'daily_at'"),
        ("[a]\nblueprint = \n", ":2:", "invalid TOML"),
    ],
)
def test_a_bad_file_names_file_line_and_problem(tmp_path: Path, text: str, where: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_schedules(path)
    assert str(info.value).startswith(f"{path}{where}"), str(info.value)
    assert message in str(info.value)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="schedules file not found"):
        load_schedules(tmp_path / "nope.toml")


def test_interval_occurrences_count_from_the_anchor() -> None:
    t = IntervalTrigger(60.0)
    assert t.next_after(999.0, 1000.0) == 1000.0
    assert t.next_after(1000.0, 1000.0) == 1060.0
    assert t.next_after(1059.9, 1000.0) == 1060.0


def test_calendar_times_across_both_dst_changes() -> None:
    # Given a 02:30 daily schedule in Berlin (02:00-03:00 does not exist on 29 March, exists twice on 25 Oct)
    daily = CronTrigger("30 2 * * *", BERLIN, False)
    # When the clocks go forward: 02:30 runs at the first minute after the gap (03:00 summer time)
    spring = daily.next_after(local(2026, 3, 28, 12, 0), 0)
    assert spring == local(2026, 3, 29, 3, 0)
    assert daily.next_after(spring, 0) == local(2026, 3, 30, 2, 30)
    # When they go back: 02:30 runs once, at its first (summer time) instant
    autumn = daily.next_after(local(2026, 10, 24, 12, 0), 0)
    assert datetime.fromtimestamp(autumn, BERLIN).utcoffset().total_seconds() == 7200  # type: ignore[union-attr]
    assert daily.next_after(autumn, 0) == local(2026, 10, 26, 2, 30)
    # 09:00 stays 09:00 local: 24 h apart but 23 h across the spring change
    nine = CronTrigger("0 9 * * *", BERLIN, False)
    first = nine.next_after(local(2026, 3, 28, 0, 0), 0)
    assert nine.next_after(first, 0) - first == 23 * 3600


def test_weekly_and_monthly_must_both_match_but_cron_days_are_or() -> None:
    both = CronTrigger("0 12 13 * fri", BERLIN, False)  # Friday the 13th only
    assert datetime.fromtimestamp(both.next_after(local(2026, 1, 1, 0, 0), 0), BERLIN).date().isoformat() == (
        "2026-02-13"
    )
    either = CronTrigger("0 12 13 * fri", BERLIN, True)
    assert datetime.fromtimestamp(either.next_after(local(2026, 1, 1, 0, 0), 0), BERLIN).day == 2


def test_due_keeps_the_latest_occurrences() -> None:
    from podium.ops.schedules import Schedule

    s = Schedule(name="a", trigger=IntervalTrigger(10.0), blueprint="b")
    assert s.due(0.0, 100.0, 0.0) == [10.0 * i for i in range(1, 11)]
    assert s.due(0.0, 100.0, 0.0, limit=3) == [80.0, 90.0, 100.0]
