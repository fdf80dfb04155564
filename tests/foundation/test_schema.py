"""Schema versions: Alembic head matches the code, mismatches refuse to open, the db commands work."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from podium.errors import SchemaMismatchError
from podium.store import SCHEMA_VERSION, SQLiteStore, migrate


def test_code_expects_the_alembic_head() -> None:
    assert migrate.head_version() == SCHEMA_VERSION


async def test_new_file_is_created_at_head(tmp_path: Path) -> None:
    path = tmp_path / "new" / "podium.db"
    async with SQLiteStore(path) as store:
        assert await store.schema_version() == SCHEMA_VERSION
        await store.put("job", "a", {})


def test_processes_starting_together_on_a_new_file_create_it_once(tmp_path: Path) -> None:
    # Several instances started at once on a new file (a deployment's first start): each opens it at head
    path = tmp_path / "shared.db"
    script = (
        "import asyncio, sys\n"
        "from podium.store import SQLiteStore\n"
        "async def main():\n"
        "    async with SQLiteStore(sys.argv[1]) as s:\n"
        "        await s.append('x', 'opened')\n"
        "asyncio.run(main())\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(path)], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    assert migrate.current_version(path) == SCHEMA_VERSION
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM history").fetchone()[0] == 4
    conn.close()


def _set_version(path: Path, version: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute("UPDATE alembic_version SET version_num=?", (version,))
    conn.commit()
    conn.close()


@pytest.mark.parametrize("version", ["0000", "9999"])
async def test_mismatched_schema_refuses_to_open_and_names_the_command(tmp_path: Path, version: str) -> None:
    path = tmp_path / "podium.db"
    migrate.upgrade(path)
    _set_version(path, version)
    with pytest.raises(SchemaMismatchError) as info:
        await SQLiteStore(path).open()
    assert info.value.found == version
    assert f"podium db upgrade --store sqlite:///{path}" in str(info.value)


async def test_foreign_sqlite_file_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE mine(x)")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaMismatchError):
        await SQLiteStore(path).open()


def _podium(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "podium", *args], cwd=cwd, capture_output=True, text=True)


async def test_db_commands_check_upgrade_backup_restore(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'podium.db'}"
    missing = _podium("db", "check", "--store", url, cwd=tmp_path)
    assert missing.returncode == 1 and "podium db upgrade --store" in missing.stderr
    assert _podium("db", "upgrade", "--store", url, cwd=tmp_path).returncode == 0
    ok = _podium("db", "check", "--store", url, cwd=tmp_path)
    assert ok.returncode == 0 and "up to date" in ok.stdout

    async with SQLiteStore(tmp_path / "podium.db") as store:
        await store.put("job", "kept", {"v": 1})
    assert (
        _podium("db", "backup", "--store", url, "--to", str(tmp_path / "b.db"), cwd=tmp_path).returncode == 0
    )
    async with SQLiteStore(tmp_path / "podium.db") as store:
        await store.put("job", "later", {"v": 2})
    restored = _podium("db", "restore", "--store", url, "--from", str(tmp_path / "b.db"), cwd=tmp_path)
    assert restored.returncode == 0, restored.stderr
    async with SQLiteStore(tmp_path / "podium.db") as store:
        assert await store.get("job", "kept") is not None
        assert await store.get("job", "later") is None

    bad = _podium("db", "restore", "--store", url, "--from", str(tmp_path / "nothing.db"), cwd=tmp_path)
    assert bad.returncode == 1 and "not a podium store backup" in bad.stderr


def test_db_check_on_old_schema_prints_the_migration_command(tmp_path: Path) -> None:
    path = tmp_path / "podium.db"
    migrate.upgrade(path)
    _set_version(path, "0000")
    result = _podium("db", "check", "--store", f"sqlite:///{path}", cwd=tmp_path)
    assert result.returncode == 1 and f"podium db upgrade --store sqlite:///{path}" in result.stderr


async def test_upgrade_to_0002_indexes_only_archived_history_by_status_and_time(tmp_path: Path) -> None:
    """0002 drops history's status and time indexes over every row for partial ones over archived jobs
    (the only cross-subject queries the engine makes): a 0001 file keeps its rows, refuses to open until
    upgraded, and then lists archived jobs through the new index; other rows enter no status/time index."""
    from podium.store import Append

    path = tmp_path / "podium.db"
    migrate.upgrade(path, "0001")
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO history(subject_id, event, status, ts, data) VALUES (?,?,?,?,'{}')",
            [("j1", "job_created", "pending", 1.0), ("j1", "job_archived", "finished", 2.0)],
        )
    conn.close()
    with pytest.raises(SchemaMismatchError):
        await SQLiteStore(path).open()
    assert migrate.upgrade(path) == SCHEMA_VERSION == "0002"
    async with SQLiteStore(path) as store:
        await store.apply(
            Append("j2", "job_archived", "failed", {"n": 2}), Append("j2", "transition", "running")
        )
        got = await store.history(event="job_archived", status="finished")
        assert [(e.subject_id, e.ts) for e in got] == [("j1", 2.0)]
        assert [e.subject_id for e in await store.history(event="job_archived", since=1.5)] == ["j1", "j2"]
        assert [e.event for e in await store.history(status="running")] == ["transition"]  # unindexed: a scan
    conn = sqlite3.connect(path)
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE tbl_name='history'")}
        assert {"ix_history_archived_status", "ix_history_archived_ts"} <= names
        assert not {"ix_history_status", "ix_history_ts"} & names
        partial = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name IN ('ix_history_archived_status', 'ix_history_archived_ts')"
        ).fetchall()
        assert len(partial) == 2 and all(r[0].endswith("WHERE event = 'job_archived'") for r in partial)
        from podium.store.base import history_query

        sql, args = history_query(
            lambda _: "?",
            None,
            event="job_archived",
            status="finished",
            since=None,
            until=None,
            after_seq=0,
            limit=10,
        )
        plan = " ".join(str(r[3]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args))
        assert "ix_history_archived_status" in plan
    finally:
        conn.close()
