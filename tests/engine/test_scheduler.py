"""Avtomatika's scheduler names over podium's one native scheduler (:mod:`podium.ops`): its records of
``schedules.toml``, errors naming ``file:line``, and ``engine.start()`` running ``SCHEDULES_CONFIG_PATH``'s
schedules once per occurrence with two engine instances on one store. The scheduler's own behaviour (every
trigger, DST, missed occurrences, take-over) is tested in ``tests/ops``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from podium.clock import ManualClock
from podium.engine import ActionFactory, Blueprint
from podium.engine.scheduler import ScheduledJobConfig, Scheduler, load_schedules_from_file
from podium.errors import ConfigError
from podium.ops import Scheduler as OpsScheduler
from podium.store.memory import MemoryStore
from podium.testing import EngineHarness


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schedules.toml"
    path.write_text(text)
    return path


def test_load_schedules_reads_avtomatikas_records(tmp_path: Path) -> None:
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
        weekly_days = ["fri"]
        time = "23:00"
        """,
    )
    cleanup, report, backup = load_schedules_from_file(path)
    assert cleanup == ScheduledJobConfig("cleanup", "system_cleanup", {"target": "temp_files"}, 3600)
    assert (report.daily_at, report.dispatch_timeout) == ("09:00", 60)
    assert (backup.weekly_days, backup.time) == (["fri"], "23:00")
    assert Scheduler is OpsScheduler


@pytest.mark.parametrize(
    "body",
    [
        "interval_seconds = 5",
        'blueprint = "b"',
        'blueprint = "b"\ndaily_at = "9am"',
        'blueprint = "b"\nweekly_days = ["funday"]\ntime = "10:00"',
        'blueprint = "b"\ninterval_seconds = 0',
    ],
)
def test_a_bad_schedule_names_the_file_and_line(tmp_path: Path, body: str) -> None:
    with pytest.raises(ConfigError, match=r"schedules\.toml:\d+"):
        load_schedules_from_file(write(tmp_path, f"[job]\n{body}\n"))


def ticker() -> Blueprint:
    bp = Blueprint("tick")

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        actions.go_to("done")

    @bp.handler(is_end=True)
    async def done() -> None: ...

    return bp


async def test_the_engine_runs_its_schedules_once_across_instances(tmp_path: Path) -> None:
    path = write(tmp_path, '[every_minute]\nblueprint = "tick"\ninterval_seconds = 60\n')
    clock = ManualClock(datetime(2023, 1, 1, 8, 59, 30, tzinfo=UTC).timestamp())
    config = {"SCHEDULES_CONFIG_PATH": str(path), "TZ": "UTC"}
    store = MemoryStore(clock=clock)
    # Given two engine instances on one store, both configured with the schedule
    async with (
        EngineHarness(store, blueprints=[ticker()], clock=clock, **config) as h,
        EngineHarness(store, blueprints=[ticker()], clock=clock, **config) as other,
    ):
        assert isinstance(h.engine.scheduler, OpsScheduler) and isinstance(
            other.engine.scheduler, OpsScheduler
        )
        # An interval schedule runs when it is first seen (as Avtomatika's does), once for both instances
        await h.advance(0)
        assert await h.engine.count_jobs() == 1
        # When three minutes pass
        for _ in range(3):
            await h.advance(60)
        # Then each occurrence made one job, whichever instance ran it
        assert await h.engine.count_jobs() == 4
        assert h.engine.scheduler.is_owner != other.engine.scheduler.is_owner
    await store.close()


async def test_an_unknown_blueprint_in_schedules_fails_start(tmp_path: Path) -> None:
    path = write(tmp_path, '[x]\nblueprint = "nope"\ninterval_seconds = 5\n')
    with pytest.raises(ConfigError, match=r"schedules\.toml:1: schedule 'x': blueprint 'nope'"):
        async with EngineHarness(blueprints=[ticker()], SCHEDULES_CONFIG_PATH=str(path)):
            pass
