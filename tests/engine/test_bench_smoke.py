"""The engine benchmark runs (quick, podium only) and reports sane figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_engine_quick_podium_only() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_engine.py"), "--quick", "--podium-only"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["bench"] == "engine"
    assert set(report["results"]) == {
        "podium-memory/1w",
        "podium-memory/4w",
        "podium-sqlite/1w",
        "podium-sqlite/4w",
    }
    for figures in report["results"].values():
        assert figures["jobs_s"] > 0 and 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert "p50 ms" in out.stdout
