"""Keep bench/bench_workcell.py from rotting: its podium side, small sizes, no MADSci venv or Redis."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_workcell_quick_podium_only_runs_and_reports() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_workcell.py"), "--quick", "--podium-only"],
        check=True,
        capture_output=True,
        text=True,
        timeout=50,
        cwd=ROOT,
    )
    lines = done.stdout.strip().splitlines()
    assert "== workcell ==" in lines
    report = json.loads(lines[-1])
    assert report["bench"] == "workcell" and report["quick"] is True
    assert report["madsci"] is None and report["madsci_note"] == "skipped (--podium-only)"
    for system in ("podium", "podium_inprocess"):
        figures = report[system]
        assert figures["queued_completed"] == figures["queued_workflows"] == 20, system
        for key in ("node_round_trip_ms", "ten_step_submit_to_completed_ms", "per_step_ms", "makespan_s"):
            assert figures[key] > 0, (system, key)
        assert figures["per_step_ms"] > figures["per_step_overhead_ms"], system
