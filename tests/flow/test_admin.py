"""Trace tools: history and replay of a trace stored in podium's SQLite store (PenguiFlow's admin CLI)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from podium.flow import Node, NodePolicy, create
from podium.flow.admin import main
from podium.store.flow_state import StoreStateStore
from podium.store.sqlite import SQLiteStore
from tests.flow.helpers import identity, msg

ROOT = Path(__file__).resolve().parents[2]
SPEC = "podium.store.flow_state:from_env"
PODIUM = [sys.executable, "-c", "from podium.cli import main; main()"]  # the `podium` console script


@pytest.fixture
async def stored_trace(tmp_path: Path) -> tuple[str, str]:
    url = f"sqlite:///{tmp_path}/podium.db"
    async with SQLiteStore(tmp_path / "podium.db") as store:
        none = NodePolicy(validate="none")
        a, b = Node(identity, name="a", policy=none), Node(identity, name="b", policy=none)
        flow = create(a.to(b), b.to(), state_store=StoreStateStore(store))
        flow.run()
        try:
            message = msg({"n": 1})
            await flow.emit(message)
            await asyncio.wait_for(flow.fetch(), 5)
        finally:
            await flow.stop()
    return url, message.trace_id


def run(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PODIUM_FLOW_STATE_URL": url}
    command = [sys.executable, "-m", "podium.flow.admin", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


async def test_history_prints_one_json_object_per_event_in_order(stored_trace: tuple[str, str]) -> None:
    url, trace_id = stored_trace
    done = await asyncio.to_thread(run, url, "history", trace_id, "--state-store", SPEC)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0
    assert [(r["event"], r["node_name"]) for r in records] == [
        ("node_start", "a"),
        ("node_success", "a"),
        ("node_start", "b"),
        ("node_success", "b"),
    ]
    assert {r["trace_id"] for r in records} == {trace_id}
    assert list(records[0]) == sorted(records[0])  # keys sorted, as penguiflow-admin prints them

    as_json = await asyncio.to_thread(
        run, url, "history", trace_id, "--state-store", SPEC, "--json", "--tail", "2"
    )
    assert json.loads(as_json.stdout) == records[-2:]


async def test_replay_prints_a_header_then_the_events(stored_trace: tuple[str, str]) -> None:
    url, trace_id = stored_trace
    done = await asyncio.to_thread(run, url, "replay", trace_id, "--state-store", SPEC, "--tail", "3")
    lines = done.stdout.splitlines()
    assert lines[0] == f"# replay trace={trace_id} events=3" and len(lines) == 4
    empty = await asyncio.to_thread(run, url, "replay", "nope", "--state-store", SPEC)
    assert empty.stdout.strip() == "# trace nope has no stored events"


def test_a_bad_state_store_spec_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "t", "--state-store", "podium.store.flow_state"]) == 1
    assert "expected 'package.module:callable'" in capsys.readouterr().err
    assert main(["history", "t", "--state-store", "podium.store.flow_state:nothing"]) == 1
    assert "has no attribute 'nothing'" in capsys.readouterr().err
    assert main(["history", "t", "--state-store", "podium.store.flow_state:trace_subject"]) == 1
    assert "error:" in capsys.readouterr().err


async def test_podium_flow_history_and_replay_read_the_store(stored_trace: tuple[str, str]) -> None:
    url, trace_id = stored_trace
    admin = await asyncio.to_thread(run, url, "history", trace_id, "--state-store", SPEC)
    command = [*PODIUM, "flow", "history", trace_id, "--store", url]
    ours = await asyncio.to_thread(
        subprocess.run, command, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert ours.returncode == 0 and ours.stdout == admin.stdout  # the same lines as penguiflow-admin's
    as_json = [*PODIUM, "flow", "history", trace_id, "--store", url, "--json"]
    array = await asyncio.to_thread(
        subprocess.run, as_json, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert json.loads(array.stdout) == [json.loads(line) for line in admin.stdout.splitlines()]
    replay = [*PODIUM, "flow", "replay", trace_id, "--store", url, "--tail", "1"]
    lines = (await asyncio.to_thread(subprocess.run, replay, cwd=ROOT, capture_output=True, text=True)).stdout
    assert lines.splitlines()[0] == f"# replay trace={trace_id} events=1"
