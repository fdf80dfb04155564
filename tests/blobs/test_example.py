"""``examples/ops/s3_round_trip.py`` runs as a user would run it, and says what it did."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_s3_round_trip_example(tmp_path: Path) -> None:
    pytest.importorskip("obstore", reason="skip: obstore is not installed (pip install 'podium[s3]')")
    pytest.importorskip("moto.server", reason="skip: moto is not installed")
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "ops" / "s3_round_trip.py")],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].endswith(": finished")
    assert lines[1].split()[:2] == ["download", "s3://payloads/inputs/plate.json"]
    assert lines[2].split()[0] == "upload" and "/report.json" in lines[2]
    assert "0 object(s) left" in lines[-1]
