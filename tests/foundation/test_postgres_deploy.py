"""PostgreSQL as a deployment setting: open_store, `podium db` check/upgrade/backup/restore, `podium serve
--storage postgresql://...`, and the engine and the workcell running on it end to end."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from podium.clock import ManualClock, system_clock
from podium.engine import ActionFactory, Blueprint, InProcessWorker
from podium.store import PostgresStore, open_store, pg_admin
from podium.testing import EngineHarness, WorkcellHarness
from tests.conformance.conftest import drop_pg_schema

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def pg_url(postgres_dsn: str) -> AsyncIterator[str]:
    url = f"{postgres_dsn}?schema=podium_t_{uuid.uuid4().hex[:12]}"
    yield url
    await drop_pg_schema(url)


def _podium(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "podium", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


async def _version(url: str) -> str | None:
    conn = await pg_admin.connect(pg_admin.parse_url(url))
    try:
        return await pg_admin.current_version(conn)
    finally:
        await conn.close()


def test_open_store_builds_a_postgres_store() -> None:
    store = open_store("postgresql://u@db.example:5432/lab?schema=lab_a&pool_size=4")
    assert isinstance(store, PostgresStore)
    assert store.target.schema == "lab_a" and store.target.pool_size == 4


async def test_db_commands_check_upgrade_backup_restore(pg_url: str, tmp_path: Path) -> None:
    # Given an empty schema: check fails and names the command; upgrade creates it
    missing = await asyncio.to_thread(_podium, "db", "check", "--store", pg_url, cwd=tmp_path)
    assert missing.returncode == 1 and f"podium db upgrade --store {pg_url}" in missing.stderr
    upgraded = await asyncio.to_thread(_podium, "db", "upgrade", "--store", pg_url, cwd=tmp_path)
    assert upgraded.returncode == 0 and "schema none -> 0002" in upgraded.stdout, upgraded.stderr
    ok = await asyncio.to_thread(_podium, "db", "check", "--store", pg_url, cwd=tmp_path)
    assert ok.returncode == 0 and "up to date" in ok.stdout

    # When a backup is taken, more is written, then the backup is restored
    async with PostgresStore(pg_url) as store:
        await store.put("job", "kept", {"v": 1}, status="done")
        await store.enqueue("q", "t1", {"p": 1})
        await store.append("kept", "created")
        token = await store.acquire_lock("owner", "a", ttl_s=1e9)
    dump = tmp_path / "podium.backup"
    backup = await asyncio.to_thread(
        _podium, "db", "backup", "--store", pg_url, "--to", str(dump), cwd=tmp_path
    )
    assert backup.returncode == 0, backup.stderr
    async with PostgresStore(pg_url) as store:
        await store.put("job", "later", {"v": 2})
        await store.append("later", "created")
    restored = await asyncio.to_thread(
        _podium, "db", "restore", "--store", pg_url, "--from", str(dump), cwd=tmp_path
    )
    assert restored.returncode == 0, restored.stderr

    # Then the store is as it was at the backup, and counters go on past the backup's
    async with PostgresStore(pg_url) as store:
        assert (await store.get("job", "kept")) is not None and await store.get("job", "later") is None
        assert [e.subject_id for e in await store.history()] == ["kept"]
        assert (await store.append("x", "next")).seq == 2
        [lease] = await store.take("q", owner="w", lease_s=5)
        assert lease.payload == {"p": 1} and token is not None and lease.token > token

    # And a file that is not a backup is refused with its name, changing nothing
    bogus = tmp_path / "bogus.backup"
    bogus.write_text("not a backup\n")
    bad = await asyncio.to_thread(
        _podium, "db", "restore", "--store", pg_url, "--from", str(bogus), cwd=tmp_path
    )
    assert bad.returncode == 1 and "not a podium PostgreSQL backup" in bad.stderr
    async with PostgresStore(pg_url) as store:
        assert await store.get("job", "kept") is not None


async def test_a_backup_restores_into_a_new_schema(pg_url: str, tmp_path: Path) -> None:
    async with PostgresStore(pg_url) as store:
        await store.put("job", "a", {"v": [1, 2]}, status="running", group="bp")
    await pg_admin.backup(pg_url, tmp_path / "b.backup")
    other = pg_url.replace("?schema=podium_t_", "?schema=podium_r_")
    try:
        assert await pg_admin.restore(other, tmp_path / "b.backup") == "0002"
        async with PostgresStore(other) as store:
            rec = await store.get("job", "a")
            assert rec is not None and rec.data == {"v": [1, 2]} and rec.status == "running"
    finally:
        await drop_pg_schema(other)


@asynccontextmanager
async def _serving(tmp_path: Path, args: list[str], port: int, health: str) -> AsyncIterator[None]:
    """``podium ARGS`` in a process of its own, until it answers ``health`` on ``port``; SIGINT after."""
    server = subprocess.Popen(
        [sys.executable, "-m", "podium", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(400):
                try:
                    if (await http.get(health)).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
                await asyncio.sleep(0.05)  # waiting for another process to listen: nothing to wait on
            else:
                pytest.fail(f"podium {' '.join(args[:2])} did not answer {health}")
        yield
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()


async def test_serve_on_postgres(pg_url: str, tmp_path: Path) -> None:
    port = _free_port()
    async with _serving(
        tmp_path, ["serve", "--port", str(port), "--storage", pg_url], port, "/_public/health"
    ):
        # The server created and migrated its schema on the database
        assert await _version(pg_url) == "0002"


async def test_workcell_serve_on_postgres(pg_url: str, tmp_path: Path) -> None:
    port = _free_port()
    args = [
        "workcell",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path / "wc"),
        "--store-url",
        pg_url,
    ]
    # The workcell keeps its state in the PostgreSQL schema
    async with _serving(tmp_path, args, port, "/health"), PostgresStore(pg_url) as store:
        assert await store.schema_version() == "0002"
        assert (await store._fetch("SELECT count(*) FROM records"))[0][0] > 0


async def test_serve_refuses_a_postgres_schema_at_another_version(pg_url: str, tmp_path: Path) -> None:
    await asyncio.to_thread(pg_admin.upgrade, pg_url)
    async with PostgresStore(pg_url) as store:
        await store._fetch("UPDATE alembic_version SET version_num = '0000'")
    result = await asyncio.to_thread(_podium, "serve", "--port", "0", "--storage", pg_url, cwd=tmp_path)
    assert result.returncode == 1
    assert f"podium db upgrade --store {pg_url}" in result.stderr and "Traceback" not in result.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_engine_job_runs_on_postgres(pg_url: str) -> None:
    bp = Blueprint("one")

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        actions.dispatch_task("work", {"n": 2}, transitions={"success": "end"})

    @bp.handler(is_end=True)
    async def end() -> None: ...

    async def work(params: dict[str, Any], attempt: int) -> dict[str, Any]:
        return {"status": "success", "data": {"double": params["n"] * 2}}

    clock = ManualClock()
    async with (
        PostgresStore(pg_url, clock=clock) as store,
        EngineHarness(
            store, clock=clock, blueprints=[bp], workers=[InProcessWorker("w", skills={"work": work})]
        ) as h,
    ):
        job = await h.join(await h.create_job("one"), timeout_s=30)
        assert job.status == "finished" and job.state_history["double"] == 4
        assert await store.count("job") >= 1


async def test_a_workcell_workflow_runs_on_postgres(pg_url: str, tmp_path: Path) -> None:
    from podium.workcell import WorkcellManagerSettings
    from podium.workcell.server import build_engine
    from tests.testing.test_harness import WORKFLOW

    # `podium workcell serve --store-url postgresql://...` builds its engine on that store
    engine = build_engine(None, data_dir=tmp_path / "wc", store_url=pg_url)
    assert isinstance(engine.store, PostgresStore)
    await engine.store.close()

    # Real time (the harness skipping time would race the store's real I/O), short simulated actions
    steps = WORKFLOW["steps"]
    workflow = {**WORKFLOW, "steps": [steps[0], {**steps[1], "args": {"time_s": 0.1}}]}
    settings = WorkcellManagerSettings(scheduler_update_interval=0.5, node_update_interval=0.5)
    async with (
        PostgresStore(pg_url) as store,
        WorkcellHarness(
            store=store,
            clock=system_clock,
            skip_time=False,
            settings=settings,
            seed=3,
            default_duration_s=0.05,
        ) as h,
    ):
        run = await h.submit(workflow)
        done = await h.join(run.workflow_id, timeout_s=50)
        assert done.status.completed, done.status.description
        assert [s.status.value for s in done.steps] == ["succeeded", "succeeded"]


async def test_two_engines_share_one_postgres_store(pg_url: str) -> None:
    from podium.engine import Config, OrchestratorEngine

    bp = Blueprint("one")

    @bp.handler(is_start=True)
    async def start(initial_data: dict[str, Any], actions: ActionFactory) -> None:
        actions.dispatch_task("work", {"n": initial_data["n"]}, transitions={"success": "end"})

    @bp.handler(is_end=True)
    async def end() -> None: ...

    ran: list[tuple[str, int]] = []

    def worker(name: str) -> InProcessWorker:
        async def work(params: dict[str, Any], attempt: int) -> dict[str, Any]:
            ran.append((name, params["n"]))
            return {"status": "success", "data": {}}

        return InProcessWorker(name, skills={"work": work}, capacity=10)

    # Given two engines (as two podium processes would be) on one PostgreSQL schema
    async with PostgresStore(pg_url) as a_store, PostgresStore(pg_url) as b_store:
        engines = []
        for name, store in (("a", a_store), ("b", b_store)):
            engine = OrchestratorEngine(store, Config(), serve_http=False)
            engine.register_blueprint(bp)
            engine.add_worker(worker(name))
            engines.append(engine)
        a, b = engines
        async with a, b:
            # When both create jobs at once
            a_ids, b_ids = await asyncio.gather(
                asyncio.gather(*(a.create_job("one", {"n": n}) for n in range(0, 40, 2))),
                asyncio.gather(*(b.create_job("one", {"n": n}) for n in range(1, 40, 2))),
            )
            # Then every job finishes, and each engine reads the other's jobs
            views = await asyncio.wait_for(
                asyncio.gather(*(a.wait_for_job(j) for j in a_ids), *(b.wait_for_job(j) for j in b_ids)),
                timeout=50,
            )
            assert (await a.get_job(b_ids[0])).status == "finished"
            assert (await b.get_job(a_ids[-1])).status == "finished"
    assert all(v.status == "finished" for v in views)
    assert sorted(n for _, n in ran) == list(range(40))  # each task ran once
