"""Drill harness: several ``podium serve`` processes on one store, remote worker processes, and the audit
that reads the store's history after a fault.

Backends are parameters of :func:`store_url`: SQLite (a file), PostgreSQL (a schema of its own) and Redis (a key
prefix of its own), each cleaned up after the drill.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from podium.engine.keys import JOB, TASK
from podium.store import Store, open_store
from podium.store.base import Record

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CLIENT_TOKEN, WORKER_TOKEN = "drill-client", "drill-worker"
ENV = {
    "CLIENT_TOKEN": CLIENT_TOKEN,
    "GLOBAL_WORKER_TOKEN": WORKER_TOKEN,
    "WORKER_TOKEN": WORKER_TOKEN,
    "LOG_LEVEL": "WARNING",
    "RATE_LIMITING_ENABLED": "false",
    # Short leases so a dead instance's work moves within the drill's bounds.
    "JOB_LEASE_S": "2",
    "TASK_LEASE_S": "3",
    "RECOVERY_LOCK_TTL_S": "2",
    "EXECUTOR_POLL_WAIT_S": "0.5",
    "STOP_GRACE_S": "5",
    "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[str]
    url: str = ""
    log: Path | None = None
    log_file: IO[str] | None = None

    def read_log(self) -> str:
        return self.log.read_text() if self.log is not None else ""

    def kill(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout_s: float = 20) -> int:
        """SIGTERM and wait (a graceful stop); SIGKILL if it does not end in time."""
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise

    def end(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        if self.log_file is not None:
            self.log_file.close()


@dataclass
class Fleet:
    store_url: str
    tmp: Path
    servers: list[Proc] = field(default_factory=list)
    workers: list[Proc] = field(default_factory=list)

    async def serve(self, name: str) -> Proc:
        """Start one ``podium serve`` instance on the store; return once it listens."""
        port = free_port()
        args = ["serve", "--port", str(port), "--host", "127.0.0.1"]
        args += ["--blueprints", str(HERE / "bp"), "--storage", self.store_url]
        return await self.launch(name, args, port, {**os.environ, **ENV, "INSTANCE_ID": name})

    async def launch(self, name: str, args: list[str], port: int, env: dict[str, str]) -> Proc:
        """Start ``podium ARGS`` (a server listening on ``port``) with ``env``; return once it listens."""
        log = self.tmp / f"{name}.log"
        log_file = log.open("w")
        popen = subprocess.Popen(
            [sys.executable, "-m", "podium", *args],
            cwd=self.tmp,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
        proc = Proc(name, popen, f"http://127.0.0.1:{port}", log, log_file)
        self.servers.append(proc)
        assert popen.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(popen.stdout.readline), 30)
        assert "serving on" in line, f"{name} did not start: {line!r}\n{log.read_text()}"
        return proc

    async def worker(self, name: str, server: Proc) -> Proc:
        """Start one remote worker process on ``server``; return once it is registered."""
        log = self.tmp / f"{name}.log"
        log_file = log.open("w")
        popen = subprocess.Popen(
            [sys.executable, str(HERE / "worker_child.py")],
            cwd=self.tmp,
            env={**os.environ, **ENV, "WORKER_ID": name, "ORCHESTRATOR_URL": server.url},
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
        proc = Proc(name, popen, log=log, log_file=log_file)
        self.workers.append(proc)
        assert popen.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(popen.stdout.readline), 30)
        assert line.strip() == "READY", f"{name} did not start: {line!r}\n{proc.read_log()}"
        return proc

    def close(self) -> None:
        for proc in self.workers + self.servers:
            proc.end()


@asynccontextmanager
async def fleet(store_url: str, tmp: Path) -> AsyncIterator[Fleet]:
    f = Fleet(store_url, tmp)
    try:
        yield f
    finally:
        f.close()


@asynccontextmanager
async def store_url(backend: str, tmp: Path, service_url: str | None) -> AsyncIterator[str]:
    """A fresh store of ``backend`` for one drill: a PostgreSQL schema of its own (dropped after), a Redis key
    prefix of its own (deleted after), or a SQLite file. ``service_url`` is the server's (PostgreSQL DSN or
    Redis URL)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'drill.db'}"
        return
    if backend == "redis":
        assert service_url
        from tests.conformance.redis_support import redis_prefix

        async with redis_prefix(service_url) as url:
            yield url
        return
    assert backend == "postgres" and service_url
    from tests.conformance.conftest import drop_pg_schema

    url = f"{service_url}?schema=podium_drill_{uuid.uuid4().hex[:10]}"
    try:
        yield url
    finally:
        await drop_pg_schema(url)


@dataclass
class Audit:
    accepted: int
    terminal: int
    finished: int
    archived_twice: int
    results_applied: int
    results_applied_twice: int
    results_ignored: int

    def line(self) -> str:
        return (
            f"jobs accepted {self.accepted} / terminal {self.terminal} / finished {self.finished} / "
            f"ended twice {self.archived_twice}; task results applied {self.results_applied} "
            f"(twice {self.results_applied_twice}, ignored duplicates {self.results_ignored})"
        )


async def audit(url: str, accepted: set[str], tasks_per_job: int) -> Audit:
    """Read the store: every accepted job is there and terminal, ended once (one ``job_archived`` entry),
    and each of its tasks is completed with its result applied once (one ``task_completed`` entry)."""
    store: Store = open_store(url)
    async with store:
        jobs = await _all(store, JOB)
        assert {r.id for r in jobs} == accepted, "the store holds exactly the accepted jobs"
        terminal = finished = twice = applied = applied_twice = ignored = 0
        for rec in jobs:
            history = await store.history(rec.id, limit=10_000)
            events = collections.Counter(e.event for e in history)
            terminal += rec.status in ("finished", "failed", "cancelled", "quarantined")
            finished += rec.status == "finished"
            twice += events["job_archived"] > 1
            completed = collections.Counter(e.data["task_id"] for e in history if e.event == "task_completed")
            tasks = await store.list(TASK, group=rec.id, limit=100)
            assert len(tasks) == tasks_per_job and all(t.status == "completed" for t in tasks), (
                rec.id,
                [(t.id, t.status) for t in tasks],
            )
            applied += sum(completed.values())
            applied_twice += sum(1 for n in completed.values() if n > 1)
            assert set(completed) == {t.id for t in tasks}, rec.id
            ignored += events["result_ignored"]
            data = rec.data
            i = data["initial_data"]["i"]
            assert (data["state_history"]["a"], data["state_history"]["b"]) == (2 * i, 2 * i + 1), rec.id
        return Audit(len(accepted), terminal, finished, twice, applied, applied_twice, ignored)


async def _all(store: Store, kind: str) -> list[Record]:
    out: list[Record] = []
    after = None
    while True:
        page = await store.list(kind, after=after, limit=500)
        out.extend(page)
        if len(page) < 500:
            return out
        after = page[-1].id
