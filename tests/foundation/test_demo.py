"""`podium demo` (what `make demo` runs) works end to end on a fresh data folder and exits 0, and again on
the folder an earlier run left."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from podium.store import SCHEMA_VERSION, migrate


def test_demo_runs_end_to_end_on_sqlite(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "podium", "demo", "--data-dir", str(data)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "finished" in result.stdout.lower() or "completed" in result.stdout.lower()
    # While it runs it says where its dashboard is (the token beside the address, never in it)
    line = next(ln for ln in result.stderr.splitlines() if ln.startswith("dashboard: "))
    address = line.split()[1]
    assert address.startswith("http://127.0.0.1:") and address.endswith("/dashboard") and "@" not in address
    assert migrate.current_version(data / "podium.db") == SCHEMA_VERSION


@pytest.mark.timeout(180)  # a demo that waits for a plate that never comes back must fail, not hang
async def test_the_demo_runs_again_on_its_own_folder_after_a_run_and_an_interrupted_one(
    tmp_path: Path,
) -> None:
    from podium.workcell import load_workflow_definition
    from podium.workcell.demo import DEMO_DIR, run_demo

    # Given a folder where the demo ran (the plate ended sealed at the reader, reagent used) ...
    data = tmp_path / "data"
    first = await run_demo(data_dir=data, show_progress=False)
    assert first["state"] == "completed" and first["plate_location"] == "reader_tray"
    # ... and an interrupted run left in its queue
    from podium.store.sqlite import SQLiteStore
    from podium.workcell import WorkcellEngine, load_workcell

    workcell = load_workcell(DEMO_DIR / "workcell.yaml")
    workcell.nodes = {
        name: "http://127.0.0.1:9" for name in workcell.nodes
    }  # nothing listens: it never starts
    left = WorkcellEngine(workcell, store=SQLiteStore(data / "podium.db"), data_dir=data, own_store=True)
    async with left:
        stuck = await left.submit(
            load_workflow_definition(DEMO_DIR / "plate_assay.workflow.yaml"),
            json_inputs={"volume_ul": 50, "wavelength_nm": 600},
        )
    # When the demo runs again on that folder; Then it completes from the lab workcell.yaml describes
    again = await run_demo(data_dir=data, show_progress=False)
    assert (
        again["state"] == "completed" and again["plate_location"] == "reader_tray" and again["plate_sealed"]
    )
    assert again["reagent_left_ul"] == first["reagent_left_ul"] == 4950.0
    assert again["workflow_id"] != stuck.workflow_id
