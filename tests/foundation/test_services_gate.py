"""A test that needs a missing service skips locally and fails when PODIUM_REQUIRE_SERVICES=1 (as in CI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
from tests.conftest import require_service

def test_needs_service():
    require_service("Redis", "127.0.0.1", 9)  # the discard port: nothing listens there
"""


def _run(tmp_path: Path, require: str | None) -> subprocess.CompletedProcess[str]:
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "PODIUM_REQUIRE_SERVICES"}
    if require is not None:
        env["PODIUM_REQUIRE_SERVICES"] = require
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            str(probe),
            "--rootdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )


def test_missing_service_skips_with_its_name_locally(tmp_path: Path) -> None:
    result = _run(tmp_path, None)
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout and "skip: no Redis" in result.stdout


def test_missing_service_fails_when_required(tmp_path: Path) -> None:
    result = _run(tmp_path, "1")
    assert result.returncode == 1, result.stdout
    assert "1 failed" in result.stdout and "PODIUM_REQUIRE_SERVICES=1" in result.stdout
