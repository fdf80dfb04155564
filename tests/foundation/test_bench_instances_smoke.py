"""The instances benchmark runs (1 and 3 ``podium serve`` on one PostgreSQL schema, a few jobs) and reports
sane figures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> dict[str, Any]:
    """The benchmark's JSON report of a run with ``args``."""
    # Its own process group: a run that overstays is killed with every server and worker it started.
    bench = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "bench_instances.py"), *args],
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
    report: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return report


@pytest.mark.timeout(300)  # 1 and then 3 servers and 4 workers on PostgreSQL: over a minute on a busy box
def test_bench_instances_quick(postgres_dsn: str) -> None:
    report = _run("--jobs", "60", "--dsn", postgres_dsn)
    assert report["bench"] == "instances" and report["jobs"] == 60
    assert set(report["rows"]) == {"podium-postgres/x1", "podium-postgres/x3"}
    for figures in report["rows"].values():
        assert figures["jobs_s"] > 0 and figures["cpu_ms_servers"] > 0
        assert 0 < figures["machine_busy"] <= 1
    assert set(report["ratios"]) == {"podium-postgres/x3_over_podium-postgres/x1"}
    assert report["on_first"] is False


@pytest.mark.timeout(300)
def test_bench_instances_on_first(postgres_dsn: str) -> None:
    """``--on-first``: the work goes to the first instance; the second runs beside it and the run completes."""
    report = _run("--jobs", "20", "--workers", "1", "--instances", "1,2", "--on-first", "--dsn", postgres_dsn)
    assert report["on_first"] is True
    assert set(report["rows"]) == {"podium-postgres/x1", "podium-postgres/x2"}
    assert all(figures["jobs_s"] > 0 for figures in report["rows"].values())


def test_ratio_medians_over_rounds() -> None:
    """``--rounds N`` reports each comparison's median over its rounds, keyed without the round's tag."""
    from bench.bench_instances import _medians

    medians = _medians(
        {
            "p/x3_over_p/x1#1": 0.8,
            "p/x3_over_p/x1#2": 1.1,
            "p/x3_over_p/x1#3": 0.9,
            "p/x2_over_p/x1#1": 1.2,
            "p/x2_over_p/x1#2": 1.0,
        }
    )
    assert medians == {"p/x3_over_p/x1": 0.9, "p/x2_over_p/x1": 1.1}
    assert _medians({"p/x3_over_p/x1": 0.95}) == {"p/x3_over_p/x1": 0.95}  # one round: no tag
