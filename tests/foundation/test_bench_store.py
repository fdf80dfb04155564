"""The store benchmark keeps running (a smoke run; the figures themselves are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_store_bench_quick_prints_table_and_json_line() -> None:
    out = subprocess.run(
        [sys.executable, "bench/bench_store.py", "--quick", "--concurrency", "1,4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert "record writes/s" in out
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["bench"] == "store"
    assert all(figures[f"{b}_c4_take_ack_ops"] > 0 for b in ("memory", "sqlite-full", "sqlite-normal"))
