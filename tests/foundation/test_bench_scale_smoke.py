"""The scale benchmark runs (quick, podium only: the engine on SQLite and PostgreSQL, and podium serve on Redis,
PostgreSQL and SQLite with avtomatika-workers over HTTP) and reports sane figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_scale_quick_podium_only(postgres_dsn: str, redis_url: str) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_scale.py"),
            "--quick",
            "--podium-only",
            "--dsn",
            postgres_dsn,
            "--redis",
            redis_url,
        ],
        capture_output=True,
        text=True,
        timeout=420,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["bench"] == "scale"
    assert set(report["rows"]) == {
        "podium-sqlite/1w",
        "podium-sqlite/4w",
        "podium-postgres/1w",
        "podium-postgres/4w",
    }
    for figures in report["rows"].values():
        assert figures["jobs_s"] > 0 and 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert set(report["ratios"]) == {"postgres_over_sqlite_1w", "postgres_over_sqlite_4w"}
    assert set(report["http"]) == {"podium-redis", "podium-postgres", "podium-sqlite"}
    for figures in report["http"].values():
        assert figures["jobs_s"] > 0 and 0 < figures["p50_ms"] <= figures["p99_ms"]
        assert figures["cpu_ms_server"] > 0
