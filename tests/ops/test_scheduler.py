"""The scheduler on a ManualClock: a simulated week across a DST change, several instances, missed runs."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from podium.clock import ManualClock
from podium.engine import ActionFactory, Blueprint
from podium.errors import ConfigError
from podium.ids import ulid_timestamp_ms
from podium.ops import SCHEDULE_KIND, Scheduler, load_schedules, workcell_submit
from podium.store import MemoryStore
from podium.testing import EngineHarness, WorkcellHarness, settle
from podium.wire.workcell import WorkflowDefinition
from tests.testing.test_harness import WORKFLOW

BERLIN = ZoneInfo("Europe/Berlin")
HOUR = 3600.0
# The ownership loops tick every third of the lock TTL and the executor polls the store every EXECUTOR_POLL_WAIT_S:
# an hour keeps a simulated week to a few hundred wake-ups.
FAST = {"RECOVERY_LOCK_TTL_S": 3600.0, "EXECUTOR_POLL_WAIT_S": 3600.0}


def local(*args: int) -> float:
    return datetime(*args, tzinfo=BERLIN).timestamp()  # type: ignore[misc]


def blueprint(name: str) -> Blueprint:
    bp = Blueprint(name)

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        actions.go_to("done")

    @bp.handler(is_end=True)
    async def done() -> None: ...

    return bp


BLUEPRINTS = [blueprint(n) for n in ("nine", "night", "every6h", "sunday", "cron12", "monthly")]

WEEK_FILE = """TZ = "Europe/Berlin"
[nine]
blueprint = "nine"
daily_at = "09:00"
input_data = {who = "lab"}

[night]
blueprint = "night"
daily_at = "02:30"

[every6h]
blueprint = "every6h"
interval_seconds = 21600

[sunday]
blueprint = "sunday"
weekly_days = ["sun"]
time = "10:00"

[cron12]
blueprint = "cron12"
cron = "0 */12 * * *"

[monthly]
blueprint = "monthly"
monthly_dates = [1]
time = "00:30"
"""


def schedules_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schedules.toml"
    path.write_text(text)
    return path


async def fired(h: EngineHarness, name: str) -> list[float]:
    """The occurrence times of a blueprint's jobs (a scheduled job's id carries its occurrence's time)."""
    jobs = await h.engine.list_jobs(blueprint=name, limit=1000)
    return sorted(ulid_timestamp_ms(j.job_id) / 1000 for j in jobs)


async def run_hours(h: EngineHarness, hours: int) -> None:
    """Move the clock ``hours`` on, stopping at each timer deadline of the engine on the way (time skipping)."""
    clock = h.manual_clock
    end = clock.now() + hours * HOUR
    while clock.now() < end:
        deadline = h.engine.timers.next_deadline()
        await clock.set(min(end, deadline if deadline is not None and deadline > clock.now() else end))
        await h.settle()


async def test_a_simulated_week_across_the_spring_dst_change(tmp_path: Path) -> None:
    # Given the schedules on a manual clock at Thursday 26 March 2026 00:00 Berlin (DST starts Sunday 29th)
    start = local(2026, 3, 26, 0, 0)
    clock = ManualClock(start)
    async with EngineHarness(clock=clock, blueprints=BLUEPRINTS, **FAST) as h:
        scheduler = Scheduler(h.engine, load_schedules(schedules_file(tmp_path, WEEK_FILE)))
        await scheduler.start()
        # When a week passes, an hour at a time
        await run_hours(h, 7 * 24)
        # Then each schedule fired exactly its occurrences, on Berlin wall time
        days = [(2026, 3, d) for d in range(26, 32)] + [(2026, 4, 1)]
        assert await fired(h, "nine") == [local(*d, 9, 0) for d in days]
        night = [local(*d, 2, 30) for d in days if d != (2026, 3, 29)] + [local(2026, 3, 29, 3, 0)]
        assert await fired(h, "night") == sorted(night)
        assert await fired(h, "every6h") == [start + i * 6 * HOUR for i in range(29)]
        assert await fired(h, "sunday") == [local(2026, 3, 29, 10, 0)]
        assert len(await fired(h, "cron12")) == 15  # 00:00 and 12:00, both ends included
        assert await fired(h, "monthly") == [local(2026, 4, 1, 0, 30)]
        # The jobs ran with the schedule's input
        (first,) = await h.engine.list_jobs(blueprint="nine", limit=1)
        job = await h.join(first.job_id)
        assert job.status == "finished" and job.initial_data == {"who": "lab"}
        # And the listing shows the next run times
        listing = {s["name"]: s for s in await scheduler.describe()}
        assert listing["nine"]["next_run_ts"] == local(2026, 4, 2, 9, 0)
        assert listing["nine"]["next_run_at"] == "2026-04-02T07:00:00Z"
        assert listing["sunday"]["next_run_ts"] == local(2026, 4, 5, 10, 0)
        assert listing["nine"]["last_run_at"] == "2026-04-01T07:00:00Z"
        await scheduler.stop()


async def test_the_autumn_change_runs_a_repeated_time_once(tmp_path: Path) -> None:
    clock = ManualClock(local(2026, 10, 24, 12, 0))
    text = 'TZ = "Europe/Berlin"\n[night]\nblueprint = "night"\ndaily_at = "02:30"\n'
    async with EngineHarness(clock=clock, blueprints=BLUEPRINTS, **FAST) as h:
        scheduler = Scheduler(h.engine, load_schedules(schedules_file(tmp_path, text)))
        await scheduler.start()
        await run_hours(h, 48)  # 25 October has 25 hours
        assert await fired(h, "night") == [local(2026, 10, 25, 2, 30), local(2026, 10, 26, 2, 30)]
        await scheduler.stop()


async def test_two_instances_run_each_occurrence_once_and_take_over(tmp_path: Path) -> None:
    # Given two engines with schedulers on one store and one clock
    clock = ManualClock(local(2026, 5, 4, 0, 0))
    store = MemoryStore(clock=clock)
    text = '[every6h]\nblueprint = "every6h"\ninterval_seconds = 21600\n'
    schedules = load_schedules(schedules_file(tmp_path, text))
    async with (
        EngineHarness(store, clock=clock, blueprints=BLUEPRINTS, **FAST) as a,
        EngineHarness(store, clock=clock, blueprints=BLUEPRINTS, **FAST) as b,
    ):
        sa, sb = Scheduler(a.engine, schedules), Scheduler(b.engine, schedules)
        await sa.start()
        await sb.start()
        assert sa.is_owner and not sb.is_owner
        await run_hours(a, 24)
        # When the owner stops, the other instance takes over and goes on
        await sa.stop()
        await run_hours(a, 24)
        assert sb.is_owner
        # Then every occurrence of the two days ran once
        times = await fired(a, "every6h")
        assert Counter(times).most_common(1)[0][1] == 1
        start = local(2026, 5, 4, 0, 0)
        assert times == [start + i * 6 * HOUR for i in range(9)]
        # And a deposed owner's late write of an occurrence that ran changes nothing
        s = schedules[0]
        stale = await store.get(SCHEDULE_KIND, "every6h")
        assert stale is not None
        old = stale._replace(version=stale.version - 1, data={**stale.data, "last": start})
        await sa._fire(s, start + 6 * HOUR, old)
        assert await fired(a, "every6h") == times
        await sb.stop()


@pytest.mark.parametrize(("policy", "expected"), [("skip", 0), ("once", 1), ("all", 3)])
async def test_missed_occurrences_after_downtime(tmp_path: Path, policy: str, expected: int) -> None:
    clock = ManualClock(local(2026, 6, 1, 12, 0))
    store = MemoryStore(clock=clock)
    text = f'TZ = "Europe/Berlin"\nmissed = "{policy}"\n[nine]\nblueprint = "nine"\ndaily_at = "09:00"\n'
    schedules = load_schedules(schedules_file(tmp_path, text))
    # Given a scheduler that ran Tuesday's 09:00
    async with EngineHarness(store, clock=clock, blueprints=BLUEPRINTS, **FAST) as h:
        s = Scheduler(h.engine, schedules)
        await s.start()
        await run_hours(h, 24)
        await s.stop()
        assert await fired(h, "nine") == [local(2026, 6, 2, 9, 0)]
    # When every instance is down for three days (Wed, Thu, Fri 09:00 pass)
    await clock.set(local(2026, 6, 5, 12, 0))
    async with EngineHarness(store, clock=clock, blueprints=BLUEPRINTS, **FAST) as h:
        s = Scheduler(h.engine, schedules)
        await s.start()
        await h.settle()
        times = await fired(h, "nine")
        # Then the policy decides what runs now, and the next run is Saturday 09:00
        missed = [local(2026, 6, d, 9, 0) for d in (3, 4, 5)]
        assert times == [local(2026, 6, 2, 9, 0), *missed[3 - expected :]]
        (nine,) = await s.describe()
        assert nine["next_run_ts"] == local(2026, 6, 6, 9, 0)
        await s.stop()


async def test_an_interval_schedule_runs_when_first_seen(tmp_path: Path) -> None:
    clock = ManualClock(1_800_000_000.0)
    text = 'missed = "skip"\n[p]\nblueprint = "every6h"\ninterval_seconds = 60\n'
    async with EngineHarness(clock=clock, blueprints=BLUEPRINTS, **FAST) as h:
        s = Scheduler(h.engine, load_schedules(schedules_file(tmp_path, text)))
        await s.start()
        await h.settle()
        await h.advance(60)
        assert await fired(h, "every6h") == [1_800_000_000.0, 1_800_000_060.0]
        await s.stop()


async def test_timeouts_reach_the_job_and_bad_input_is_recorded(tmp_path: Path) -> None:
    bp = Blueprint("typed", input_schema={"type": "object", "required": ["n"]})

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        actions.dispatch_task("nobody", {}, transitions={"success": "done", "timeout": "late"})

    @bp.handler(is_end=True)
    async def done() -> None: ...

    @bp.handler(is_end=True)
    async def late() -> None: ...

    clock = ManualClock(1_800_000_000.0)
    text = (
        '[t]\nblueprint = "typed"\ninterval_seconds = 3600\ndispatch_timeout = 30\ninput_data = {n = 1}\n'
        '[bad]\nblueprint = "typed"\ninterval_seconds = 3600\ninput_data = {m = 1}\n'
    )
    async with EngineHarness(clock=clock, blueprints=[bp], **FAST) as h:
        s = Scheduler(h.engine, load_schedules(schedules_file(tmp_path, text)))
        await s.start()
        await h.settle()
        # The scheduled job's task has the schedule's dispatch timeout: nobody takes it, it times out at 30 s
        (job,) = await h.engine.list_jobs(blueprint="typed")
        await h.advance(29)
        assert (await h.engine.get_job(job.job_id)).status == "waiting_for_worker"
        await h.advance(1)
        view = await h.join(job.job_id)
        assert view.status == "finished" and view.state == "late"
        # The occurrence whose input the blueprint refuses is recorded as failed; the schedule goes on
        bad = {x["name"]: x for x in await s.describe()}["bad"]
        assert bad["last_job_id"] is None and "n" in bad["last_error"]
        assert s.failed == {"typed": 1} and s.triggered == {"typed": 1}
        await s.stop()


async def test_an_unknown_blueprint_or_a_workflow_without_workcell_stops_start_up(tmp_path: Path) -> None:
    text = '[a]\nblueprint = "nope"\ndaily_at = "09:00"\n\n[w]\nworkflow = "wf"\ndaily_at = "09:00"\n'
    path = schedules_file(tmp_path, text)
    schedules = load_schedules(path)
    async with EngineHarness(blueprints=BLUEPRINTS, **FAST) as h:
        with pytest.raises(
            ConfigError, match=rf"^{path}:1: schedule 'a': blueprint 'nope' is not registered"
        ):
            Scheduler(h.engine, schedules[:1])
        with pytest.raises(ConfigError, match=rf"^{path}:5: schedule 'w' runs workflow 'wf'"):
            Scheduler(h.engine, schedules[1:])


async def test_a_workflow_schedule_starts_workcell_runs_once_per_occurrence(tmp_path: Path) -> None:
    async with WorkcellHarness(seed=3, clock=ManualClock(1_800_000_000.0)) as h:
        definition_id = await h.workcell.save_definition(WorkflowDefinition.model_validate(WORKFLOW))
        text = f'[seal]\nworkflow = "{definition_id}"\ninterval_seconds = 3600\n'
        engine = h.workcell.jobs
        s = Scheduler(
            engine,
            load_schedules(schedules_file(tmp_path, text)),
            submit_workflow=workcell_submit(h.workcell),
        )
        await s.start()
        await settle(h.manual_clock)
        (entry,) = await s.describe()
        run = await h.join(entry["last_job_id"])
        assert run.status.completed, run.status.description
        assert run.workflow_id == s.job_id(s.schedules["seal"], 1_800_000_000.0)
        # The same occurrence again: the run exists, nothing new starts
        rec = await h.store.get(SCHEDULE_KIND, "seal")
        assert rec is not None
        stale = rec._replace(version=rec.version - 1)
        await s._fire(s.schedules["seal"], 1_800_000_000.0, stale)
        assert len(await h.workcell.archived_workflows(10)) + len(h.workcell.active_workflows()) == 1
        assert s.triggered == {"workflow:" + definition_id: 1}
        await s.stop()
