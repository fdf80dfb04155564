"""A server never half-starts: a mismatched schema or a bad setting stops `podium serve` with one clear line."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from podium.store import migrate


def _serve(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "podium", "serve", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_mismatched_schema_refuses_to_start_and_prints_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "podium.db"
    migrate.upgrade(path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE alembic_version SET version_num='0000'")
    conn.commit()
    conn.close()
    result = _serve("--port", "0", "--storage", "sqlite:///podium.db", cwd=tmp_path)
    assert result.returncode == 1
    assert "podium db upgrade --store sqlite:///podium.db" in result.stderr
    assert "serving" not in result.stdout and "Traceback" not in result.stderr


def test_bad_setting_in_a_file_names_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "server.settings.yaml").write_text("API_PORT: notaport\n")
    result = _serve("--settings-dir", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert "server.settings.yaml" in result.stderr and "'api_port'" in result.stderr
    assert "serving" not in result.stdout and "Traceback" not in result.stderr


def test_malformed_settings_file_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text("api_port: 8080\n  oops: [\n")
    result = _serve("--settings-dir", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and "settings.yaml" in result.stderr and "line" in result.stderr
