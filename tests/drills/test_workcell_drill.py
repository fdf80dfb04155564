"""Workcell drill: two ``podium workcell serve`` processes on one PostgreSQL schema; the owner is SIGKILLed
while a step runs on its node; the standby takes over, finishes the workflow, and no node action runs twice.

The simulated nodes live in this (the parent) process, served over loopback HTTP, so they outlive either
workcell; the kill point is reached on an event (the plate reader holds its action until told).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from podium.client import WorkcellClient
from podium.store import pg_admin
from podium.workcell import ActionStatus
from tests.drills.fleet import ROOT, free_port
from tests.workcell import crash_child
from tests.workcell.test_crash_kill import WAIT_S, Bench, bench, started_on_nodes, until

BACKENDS = ["postgres"]  # "redis" joins here once that store lands
TOKEN = "drill-workcell-token"


@pytest.fixture(params=BACKENDS)
async def url(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    from tests.conformance.conftest import drop_pg_schema

    u = f"{request.getfixturevalue('postgres_dsn')}?schema=podium_wcdrill_{uuid.uuid4().hex[:10]}"
    try:
        yield u
    finally:
        await drop_pg_schema(u)


async def _serve(name: str, url: str, workcell_file: Path, tmp: Path) -> tuple[Any, str]:
    """Start one ``podium workcell serve`` on the store; return (process, base URL) once it answers."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "LOG_LEVEL": "WARNING",
        "WORKCELL_API_TOKENS": TOKEN,
        # A short owner lock: the standby takes over ~1 s after the owner dies.
        "WORKCELL_OWNER_LOCK_TTL_S": "1",
        "WORKCELL_SCHEDULER_UPDATE_INTERVAL": "0.2",
        "WORKCELL_NODE_UPDATE_INTERVAL": "2",
    }
    with (tmp / f"{name}.log").open("w") as log:  # the child keeps its own descriptor
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "podium", "workcell", "serve", "--port", str(port)),
            *("--workcell", str(workcell_file), "--data-dir", str(tmp / name), "--store-url", url),
            cwd=tmp,
            stdout=log,
            stderr=log,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base) as http:
        for _ in range(600):
            try:
                if (await http.get("/health")).status_code == 200:
                    return proc, base
            except httpx.TransportError:
                pass
            assert proc.returncode is None, (tmp / f"{name}.log").read_text()
            await asyncio.sleep(0.05)  # waiting for another process to listen: nothing to wait on
    pytest.fail(f"{name} did not answer /health")


async def _owner_lock(url: str) -> tuple[str, int] | None:
    target = pg_admin.parse_url(url)
    conn = await asyncpg.connect(target.dsn)
    try:
        row = await conn.fetchrow(
            f'SELECT owner, token FROM "{target.schema}".locks WHERE name = $1', "workcell.owner"
        )
    finally:
        await conn.close()
    return (row["owner"], row["token"]) if row else None


def _submit(base: str) -> Any:
    with WorkcellClient(base, token=TOKEN) as client:
        return client.submit_workflow(crash_child.workflow(), await_completion=False)


def _await(base: str, workflow_id: str) -> Any:
    with WorkcellClient(base, token=TOKEN) as client:
        return client.await_workflow(workflow_id, timeout_s=WAIT_S, query_frequency=0.2)


def _each_step_ran_once(b: Bench, done: Any) -> None:
    for (node_name, action), step in zip(crash_child.STEPS, done.steps, strict=True):
        assert step.status == ActionStatus.SUCCEEDED, (node_name, step.status)
        node, door = b.nodes[node_name], b.doors[node_name]
        assert started_on_nodes(b)[node_name] == [step.result.action_id], (node_name, started_on_nodes(b))
        assert node.calls == Counter({action: 1}), (node_name, node.calls)
        assert door.count("POST", f"/action/{action}/{step.result.action_id}/start") == 1


async def test_kill_the_workcell_owner_mid_step_the_standby_finishes_once(url: str, tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        cell = tmp_path / "workcell.yaml"
        cell.write_text(json.dumps({"name": "drill_cell", "nodes": b.urls}))
        owner, owner_url = await _serve("owner", url, cell, tmp_path)  # first up: it takes the lock
        standby, standby_url = await _serve("standby", url, cell, tmp_path)
        try:
            held = await _owner_lock(url)
            assert held is not None
            wf = await asyncio.to_thread(_submit, owner_url)
            # Given the owner running the third step (read_plate) on its node
            await until(b.reader.entered, "read_plate to run on the node", tmp_path / "owner.log")
            # When the owner is SIGKILLed there
            owner.send_signal(signal.SIGKILL)
            await until(owner.wait(), "the owner to die")
            b.reader.release.set()
            # Then the standby takes the lock, finishes the workflow, and no step ran twice on its node
            done = await asyncio.to_thread(_await, standby_url, wf.workflow_id)
            assert done.status.completed, [(s.name, s.status) for s in done.steps]
            _each_step_ran_once(b, done)
            now = await _owner_lock(url)
            assert now is not None and now[0] != held[0] and now[1] > held[1]
        finally:
            for proc in (owner, standby):
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
