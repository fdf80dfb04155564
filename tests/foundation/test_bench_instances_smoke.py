"""The instances benchmark runs (1 and 3 ``podium serve`` on one PostgreSQL schema, a few jobs) and reports
sane figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_instances_quick(postgres_dsn: str) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_instances.py"), "--jobs", "60", "--dsn", postgres_dsn],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["bench"] == "instances" and report["jobs"] == 60
    assert set(report["rows"]) == {"podium-postgres/x1", "podium-postgres/x3"}
    for figures in report["rows"].values():
        assert figures["jobs_s"] > 0 and figures["cpu_ms_servers"] > 0
    assert set(report["ratios"]) == {"podium-postgres/x3_over_podium-postgres/x1"}
