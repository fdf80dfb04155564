"""schedules.toml: parsing with errors naming the table and field, the calendar rule, and jobs created on the
engine's clock (once per slot even with two engine instances on one store)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from podium.clock import ManualClock
from podium.engine import ActionFactory, Blueprint
from podium.engine.scheduler import ScheduledJobConfig, load_schedules_from_file, next_fire
from podium.errors import ConfigError
from podium.store.memory import MemoryStore
from podium.testing import EngineHarness

UTC = ZoneInfo("UTC")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schedules.toml"
    path.write_text(text)
    return path


def test_load_schedules_reads_every_kind(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [cleanup]
        blueprint = "system_cleanup"
        interval_seconds = 3600
        input_data = { target = "temp_files" }

        [report]
        blueprint = "generate_report"
        daily_at = "09:00"
        dispatch_timeout = 60

        [backup]
        blueprint = "full_backup"
        weekly_days = ["Fri"]
        time = "23:00"
        """,
    )
    cleanup, report, backup = load_schedules_from_file(path)
    assert (cleanup.interval_seconds, cleanup.input_data) == (3600, {"target": "temp_files"})
    assert (report.daily_at, report.dispatch_timeout) == ("09:00", 60)
    assert (backup.weekly_days, backup.time) == (["fri"], "23:00")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("interval_seconds = 5", "blueprint"),
        ('blueprint = "b"', "interval_seconds"),
        ('blueprint = "b"\ninterval_seconds = 5\ndaily_at = "09:00"', "interval_seconds"),
        ('blueprint = "b"\ndaily_at = "9am"', "daily_at"),
        ('blueprint = "b"\nweekly_days = ["mon"]', "time"),
        ('blueprint = "b"\nweekly_days = ["funday"]\ntime = "10:00"', "weekly_days"),
        ('blueprint = "b"\nmonthly_dates = [0]\ntime = "10:00"', "monthly_dates"),
        ('blueprint = "b"\ninterval_seconds = 0', "interval_seconds"),
        ('blueprint = "b"\ninterval_seconds = 5\ncron = "* * *"', "cron"),
    ],
)
def test_a_bad_schedule_names_its_table_and_field(tmp_path: Path, body: str, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"\[job\] {field}:"):
        load_schedules_from_file(write(tmp_path, f"[job]\n{body}\n"))


def test_next_fire_follows_the_calendar() -> None:
    daily = ScheduledJobConfig("d", "bp", daily_at="09:00")
    assert next_fire(daily, datetime(2023, 1, 1, 8, 0, tzinfo=UTC)) == datetime(2023, 1, 1, 9, 0, tzinfo=UTC)
    assert next_fire(daily, datetime(2023, 1, 1, 9, 0, tzinfo=UTC)) == datetime(2023, 1, 2, 9, 0, tzinfo=UTC)
    weekly = ScheduledJobConfig("w", "bp", weekly_days=["mon", "wed"], time="10:00")
    # 2023-01-01 is a Sunday
    assert next_fire(weekly, datetime(2023, 1, 1, 10, 0, tzinfo=UTC)) == datetime(
        2023, 1, 2, 10, 0, tzinfo=UTC
    )
    monthly = ScheduledJobConfig("m", "bp", monthly_dates=[1, 15], time="12:00")
    assert next_fire(monthly, datetime(2023, 1, 2, tzinfo=UTC)) == datetime(2023, 1, 15, 12, 0, tzinfo=UTC)
    moscow = ZoneInfo("Europe/Moscow")
    assert next_fire(daily, datetime(2023, 1, 1, 8, 0, tzinfo=moscow)).utcoffset() == moscow.utcoffset(
        datetime(2023, 1, 1)
    )


def ticker() -> Blueprint:
    bp = Blueprint("tick")

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        actions.go_to("done")

    @bp.handler(is_end=True)
    async def done() -> None: ...

    return bp


async def test_interval_and_daily_schedules_create_jobs_once_per_slot(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [every_minute]
        blueprint = "tick"
        interval_seconds = 60
        input_data = { source = "interval" }

        [morning]
        blueprint = "tick"
        daily_at = "09:00"
        input_data = { source = "daily" }
        """,
    )
    clock = ManualClock(datetime(2023, 1, 1, 8, 59, 30, tzinfo=UTC).timestamp())
    config = {"SCHEDULES_CONFIG_PATH": str(path), "TZ": "UTC"}
    store = MemoryStore(clock=clock)
    # two engine instances on one store: every slot still gives one job
    async with (
        EngineHarness(store, blueprints=[ticker()], clock=clock, **config) as h,
        EngineHarness(store, blueprints=[ticker()], clock=clock, **config) as other,
    ):
        await h.advance(0)  # the current minute's slot fires at start-up
        await h.advance(30)  # 09:00: the next interval slot and the daily time
        await h.advance(60)
        jobs = await h.engine.list_jobs(limit=100)
        sources = sorted(j.initial_data["source"] for j in jobs)
        assert sources == ["daily", "interval", "interval", "interval"]
        assert other.engine.scheduler is not None
    assert h.engine.scheduler is None  # stopped with the engine
    await store.close()


async def test_an_unknown_blueprint_in_schedules_fails_start(tmp_path: Path) -> None:
    path = write(tmp_path, '[x]\nblueprint = "nope"\ninterval_seconds = 5\n')
    with pytest.raises(ConfigError, match=r"\[x\] blueprint: no blueprint named 'nope'"):
        async with EngineHarness(blueprints=[ticker()], SCHEDULES_CONFIG_PATH=str(path)):
            pass


async def test_an_instance_keeps_only_its_two_latest_slot_locks(tmp_path: Path) -> None:
    path = write(tmp_path, '[fast]\nblueprint = "tick"\ninterval_seconds = 10\n')
    clock = ManualClock(1_000_000.0)
    async with EngineHarness(blueprints=[ticker()], clock=clock, SCHEDULES_CONFIG_PATH=str(path)) as h:
        await h.advance(0)  # the start-up slot
        for _ in range(5):
            await h.advance(10)
        assert await h.engine.count_jobs() == 6
        held = [
            await h.store.acquire_lock(f"schedule:fast:{int(t)}", "probe", ttl_s=1)
            for t in range(1_000_000, 1_000_060, 10)
        ]
        # slots 1_000_000 .. 1_000_030 were released (the probe takes them), the last two are still held
        assert [token is not None for token in held] == [True, True, True, True, False, False]
