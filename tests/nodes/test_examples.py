"""The node examples run as files and print what they promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "nodes"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("custom_node.py", ["scan: succeeded", "spectrum.csv", "calibrate: succeeded", "bad scan: failed"]),
        ("sim_workcell.py", ["read_plate  succeeded", "plate_450nm.csv", "locked: ['liquidhandler_1'"]),
    ],
)
def test_example_runs(script: str, expected: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, timeout=50, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for text in expected:
        assert text in proc.stdout
