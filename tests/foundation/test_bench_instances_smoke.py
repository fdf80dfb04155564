"""The instances benchmark runs (1 and 3 ``podium serve`` on one PostgreSQL schema, a few jobs) and reports
sane figures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)  # 1 and then 3 servers and 4 workers on PostgreSQL: over a minute on a busy box
def test_bench_instances_quick(postgres_dsn: str) -> None:
    # Its own process group: a run that overstays is killed with every server and worker it started.
    bench = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "bench_instances.py"), "--jobs", "60", "--dsn", postgres_dsn],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        stdout, stderr = bench.communicate(timeout=240)
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.wait()
    assert bench.returncode == 0, stderr[-2000:]
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["bench"] == "instances" and report["jobs"] == 60
    assert set(report["rows"]) == {"podium-postgres/x1", "podium-postgres/x3"}
    for figures in report["rows"].values():
        assert figures["jobs_s"] > 0 and figures["cpu_ms_servers"] > 0
    assert set(report["ratios"]) == {"podium-postgres/x3_over_podium-postgres/x1"}
