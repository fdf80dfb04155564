"""The scheduler behind the server: SCHEDULES_CONFIG_PATH, GET /api/v1/schedules, `podium serve --schedules`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from podium.clock import ManualClock
from podium.server import ServerSettings, create_app
from podium.testing import EngineHarness
from tests.ops.test_scheduler import BLUEPRINTS, FAST, local

TOKEN = "client-secret"


async def test_the_schedules_route_lists_next_run_times(tmp_path: Path) -> None:
    path = tmp_path / "schedules.toml"
    path.write_text('TZ = "Europe/Berlin"\n[nine]\nblueprint = "nine"\ndaily_at = "09:00"\n')
    clock = ManualClock(local(2026, 3, 28, 12, 0))
    async with EngineHarness(clock=clock, blueprints=BLUEPRINTS, **FAST) as h:
        settings = ServerSettings(client_token=TOKEN, schedules_config_path=path)
        app = create_app(h.engine, settings, manage_engine=False)
        st = app.state.podium
        await st.start()
        try:
            transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://podium") as http:
                assert (await http.get("/api/v1/schedules")).status_code == 401
                r = await http.get("/api/v1/schedules", headers={"X-Client-Token": TOKEN})
                assert r.status_code == 200
                (nine,) = r.json()
                # 09:00 Berlin on 29 March is 07:00 UTC: summer time started that night
                assert nine["name"] == "nine" and nine["next_run_at"] == "2026-03-29T07:00:00Z"
                assert nine["trigger"] == "daily at 09:00" and nine["timezone"] == "Europe/Berlin"
                await h.advance(24 * 3600)
                (nine,) = (await http.get("/api/v1/schedules", headers={"X-Client-Token": TOKEN})).json()
                assert nine["last_run_at"] == "2026-03-29T07:00:00Z" and nine["last_job_id"]
                assert nine["next_run_at"] == "2026-03-30T07:00:00Z"
                job = await h.join(nine["last_job_id"])
                assert job.status == "finished"
        finally:
            await st.stop()


def test_serve_refuses_a_bad_schedules_file_naming_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "schedules.toml"
    bad.write_text('[nightly]\nblueprint = "backup"\ndaily_at = "2am"\n')
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "podium",
            "serve",
            "--port",
            "0",
            "--storage",
            "memory://",
            "--schedules",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2, out.stderr
    assert f"{bad}:3: schedule 'nightly': field 'daily_at' must be a time 'HH:MM'" in out.stderr


async def test_workcell_serve_runs_workflow_schedules_with_its_app(tmp_path: Path) -> None:
    from podium.cli.workcell import _run_schedules
    from podium.ops import Scheduler, workcell_submit
    from podium.testing import WorkcellHarness, settle
    from podium.wire.workcell import WorkflowDefinition
    from podium.workcell.server import create_app as workcell_app
    from tests.testing.test_harness import WORKFLOW

    async with WorkcellHarness(seed=3, clock=ManualClock(1_800_000_000.0)) as h:
        definition_id = await h.workcell.save_definition(WorkflowDefinition.model_validate(WORKFLOW))
        path = tmp_path / "schedules.toml"
        path.write_text(f'[seal]\nworkflow = "{definition_id}"\ninterval_seconds = 3600\n')
        scheduler = Scheduler.from_file(h.workcell.jobs, path, submit_workflow=workcell_submit(h.workcell))
        app = workcell_app(h.workcell, manage_engine=False, api_tokens=["t"])
        _run_schedules(app, scheduler)
        async with app.router.lifespan_context(app):
            await settle(h.manual_clock)
            assert scheduler.is_owner
            (entry,) = await scheduler.describe()
            run = await h.join(entry["last_job_id"])
            assert run.status.completed
        assert not scheduler.is_owner  # stopped with the app
