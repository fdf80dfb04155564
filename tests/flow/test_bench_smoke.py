"""Keep bench/bench_flow.py from rotting: its podium side, small sizes, no PenguiFlow venv."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_bench_flow_quick_podium_only_runs_and_reports() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_flow.py"), "--quick", "--podium-only"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    lines = done.stdout.strip().splitlines()
    assert lines[0].split()[:2] == ["workload", "unit"]
    report = json.loads(lines[-1])
    podium = report["results"]["podium"]
    assert set(report["results"]) == {"podium"}
    for key in ("hop_overhead_us", "hop_latency_us", "throughput_msgs_per_s", "fanout100_join_ms_per_trace"):
        assert podium[key] > 0, key
    assert podium["memory"]["bytes_per_10k"] > 0
    assert 0 < podium["import_ms"] < podium["import_first_use_ms"]


def test_bench_planner_podium_only_runs_and_reports() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_planner.py"),
            "--podium-only",
            "--runs",
            "2",
            "--rounds",
            "1",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(report["results"]) == {"podium"}
    assert report["results"]["podium"]["sequential_us_per_step"] > 0
    assert report["results"]["podium"]["parallel_us_per_call"] > 0


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="--instructions needs valgrind")
def test_bench_planner_counts_instructions_of_the_planner_runs_alone() -> None:
    from bench.bench_planner import count_instructions

    one, three = (count_instructions(sys.executable, "podium", "parallel", runs) for runs in (1, 3))
    assert 0 < one < three  # each run adds its own work to what start-up costs


def test_bench_a2a_podium_only_runs_and_reports() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_a2a.py"),
            "--podium-only",
            "--requests",
            "20",
            "--rounds",
            "1",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(report["results"]) == {"podium"} and report["results"]["podium"]["p50_ms"] > 0
