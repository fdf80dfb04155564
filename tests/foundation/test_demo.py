"""`podium demo` (what `make demo` runs) works end to end on a fresh data folder and exits 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
