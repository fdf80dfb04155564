"""``podium serve`` and the server example, as separate processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_example_server_with_a_remote_worker_process_runs_jobs(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "server" / "run.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,  # its own podium-data/, not one a demo run left here
    )
    lines = out.stdout.splitlines()
    assert sum(" finished -> finished" in line for line in lines) == 3
    assert "workers: ['example-worker']" in lines[-1]


def test_serve_refuses_a_malformed_clients_file_naming_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "clients.toml"
    bad.write_text('[ok]\ntoken = "t"\n\n[broken]\nplan = "x"\n')
    out = subprocess.run(
        [sys.executable, "-m", "podium", "serve", "--port", "0", "--clients", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,  # its own podium-data/: one left in the checkout may be at an older schema
    )
    assert out.returncode == 2
    assert f"{bad}:4" in out.stderr and "field 'token' is required" in out.stderr
