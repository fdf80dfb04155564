"""SIGKILL a workcell process mid-workflow; a new process on the same SQLite file finishes the workflow with
every step run once on its node.

The simulated nodes live in this (the parent) process, served over loopback HTTP, so they outlive the child.
Every kill point is reached on an event, never after a sleep: the plate reader's ``read_plate`` waits for the
parent's word inside the node (so it is running there when the kill lands), and a request to the node can be
held at the door (:class:`Door`) until the parent has killed the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from podium.nodes.sim import PlateReaderNode, SimNode, make_sim_nodes
from podium.store.sqlite import SQLiteStore
from podium.workcell import ActionStatus, WorkcellEngine
from podium.workcell.engine import ACTION_KIND
from podium.workcell.server import serve_asgi
from tests.workcell import crash_child

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

WAIT_S = 30.0
"""Generous bound on every wait (a loaded machine); each test takes ~3.5 s."""


class HeldReader(PlateReaderNode):
    """The simulated plate reader, whose actions wait for ``release`` once running on the node."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def simulate(self, *, duration_s: float | None = None, action_name: str | None = None) -> None:
        self.entered.set()
        await self.release.wait()
        await super().simulate(duration_s=duration_s, action_name=action_name)


@dataclass
class Hold:
    """A request to hold at the door (``method`` and the end of its path) until ``release`` is set; then it
    reaches the node if ``forward``, or is answered 503 without reaching it."""

    method: str
    path_suffix: str
    forward: bool = True
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    handled: asyncio.Event = field(default_factory=asyncio.Event)
    body: bytes = b""


class Door:
    """ASGI middleware in front of a node's app: holds the requests it is told to, and records every request
    that reaches the node."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[tuple[str, str]] = []
        self.holds: list[Hold] = []

    def hold(self, method: str, path_suffix: str, *, release: bool = False) -> Hold:
        hold = Hold(method, path_suffix)
        if release:  # only watch for it
            hold.release.set()
        self.holds.append(hold)
        return hold

    def count(self, method: str, path: str) -> int:
        return self.requests.count((method, path))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = (scope["method"], scope["path"])
        hold = next(
            (
                h
                for h in self.holds
                if not h.arrived.is_set()
                and h.method == scope["method"]
                and scope["path"].endswith(h.path_suffix)
            ),
            None,
        )
        if hold is None:
            self.requests.append(request)
            await self.app(scope, receive, send)
            return
        # Read the body now: the client may be dead by the time the request goes on to the node.
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        hold.body = body
        hold.arrived.set()
        await hold.release.wait()
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        try:
            if hold.forward:
                self.requests.append(request)
                await self.app(scope, replay, send)
            else:
                await send({"type": "http.response.start", "status": 503, "headers": []})
                await send({"type": "http.response.body", "body": b""})
        finally:
            hold.handled.set()


@dataclass
class Bench:
    nodes: dict[str, SimNode]
    doors: dict[str, Door]
    urls: dict[str, str]
    reader: HeldReader


@contextlib.asynccontextmanager
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    nodes = make_sim_nodes(default_duration_s=0, work_dir=tmp_path / "nodes")
    reader = HeldReader(
        node_name="platereader_1", default_duration_s=0, work_dir=tmp_path / "nodes" / "reader"
    )
    nodes["platereader_1"] = reader
    doors = {name: Door(node.create_app()) for name, node in nodes.items()}
    async with contextlib.AsyncExitStack() as stack:
        urls = {name: await stack.enter_async_context(serve_asgi(door)) for name, door in doors.items()}
        try:
            yield Bench(nodes, doors, urls, reader)
        finally:
            reader.release.set()  # let a held action end, so the servers can shut down
            for door in doors.values():
                for hold in door.holds:
                    hold.release.set()


@contextlib.asynccontextmanager
async def child_process(db: Path, data_dir: Path, urls: dict[str, str], log: Path) -> AsyncIterator[Any]:
    with log.open("w") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            crash_child.__file__,
            str(db),
            str(data_dir),
            json.dumps(urls),
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            env={**os.environ, "LOG_LEVEL": "WARNING"},
        )
        try:
            yield proc
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def until(event: asyncio.Event | Awaitable[Any], what: str, log: Path | None = None) -> Any:
    aw = event.wait() if isinstance(event, asyncio.Event) else event
    try:
        return await asyncio.wait_for(aw, WAIT_S)
    except TimeoutError:
        detail = log.read_text()[-3000:] if log is not None and log.exists() else ""
        pytest.fail(f"timed out waiting for {what}\n{detail}")


async def kill(proc: Any) -> None:
    proc.send_signal(signal.SIGKILL)
    await until(proc.wait(), "the child to die")
    assert proc.returncode == -signal.SIGKILL


async def journal(db: Path, workflow_id: str) -> dict[str, Any]:
    """The run's action journal (read by this process from the file): action id -> (phase, record data)."""
    store = SQLiteStore(db)
    await store.open()
    try:
        return {r.id: (r.status, r.data) for r in await store.list(ACTION_KIND, group=workflow_id, limit=100)}
    finally:
        await store.close()


def started_on_nodes(b: Bench) -> dict[str, list[str]]:
    """Node name -> ids of the actions it started (a node keeps every action it started)."""
    return {name: list(node.action_history()) for name, node in b.nodes.items()}


async def resume_in_this_process(db: Path, data_dir: Path, b: Bench) -> WorkcellEngine:
    second = crash_child.engine(db, data_dir, b.urls)
    await second.start()
    return second


async def assert_each_step_ran_once(b: Bench, engine: WorkcellEngine, done: Any) -> None:
    """Every step's action was started once on its node, and the step's result is the node's."""
    assert done.status.completed, [(s.name, s.status, s.result and s.result.errors) for s in done.steps]
    for (node_name, action), step in zip(crash_child.STEPS, done.steps, strict=True):
        node, door = b.nodes[node_name], b.doors[node_name]
        action_id = step.result.action_id
        assert step.status == ActionStatus.SUCCEEDED
        assert started_on_nodes(b)[node_name] == [action_id], (node_name, started_on_nodes(b))
        assert node.calls == Counter({action: 1}), (node_name, node.calls)
        assert door.count("POST", f"/action/{action}/{action_id}/start") == 1
        history = node.action_history(action_id)[action_id]
        assert [r.status.value for r in history] == ["running", "succeeded"]
        recorded = await engine.datapoints.get(step.result.datapoints["json_result"])
        assert recorded.value == history[-1].json_result


async def run_child_until(b: Bench, tmp_path: Path, reached: asyncio.Event, what: str) -> str:
    """Start the child workcell (it submits the workflow), SIGKILL it once ``reached`` is set; its workflow id."""
    db, data_dir, log = tmp_path / "wc.db", tmp_path / "data", tmp_path / "child.log"
    async with child_process(db, data_dir, b.urls, log) as proc:
        line = await until(proc.stdout.readline(), "the child's submission", log)
        assert line.startswith(b"SUBMITTED "), log.read_text()
        await until(reached, what, log)
        await kill(proc)
    return str(line.split()[1].decode())


async def test_sigkill_while_a_step_runs_on_its_node_resumes_by_reconciling(tmp_path: Path) -> None:
    db, data_dir = tmp_path / "wc.db", tmp_path / "data"
    async with bench(tmp_path) as b:
        # Given a child workcell running a 4-step workflow, SIGKILLed while the third step (read_plate) runs
        # on its node, journaled "acknowledged"
        workflow_id = await run_child_until(b, tmp_path, b.reader.entered, "read_plate to run on the node")
        phases = await journal(db, workflow_id)
        in_flight = [aid for aid, (phase, data) in phases.items() if data["action"] == "read_plate"]
        assert len(in_flight) == 1 and phases[in_flight[0]][0] == "acknowledged", phases
        (action_id,) = in_flight
        assert sorted(phase for phase, _ in phases.values()) == ["acknowledged", "result", "result"]
        asked = b.doors["platereader_1"].hold("GET", f"/{action_id}/result", release=True)
        # When a new workcell starts on the same file (it owns it once the dead owner's lock and its step's
        # lease lapse) and asks the node about the action, which then finishes
        second = await resume_in_this_process(db, data_dir, b)
        try:
            await until(asked.arrived, "the new owner to ask the node about the action in flight")
            assert b.reader.calls == Counter()  # still held in the node: the new owner found it running
            b.reader.release.set()
            done = await second.wait_for(workflow_id, timeout_s=WAIT_S)
            # Then the workflow completed, the in-flight step kept its action id and the node's result, and
            # no step ran twice
            await assert_each_step_ran_once(b, second, done)
            assert done.steps[2].result.action_id == action_id
            assert b.doors["platereader_1"].count("POST", "/action/read_plate") == 1
            assert (await second.jobs.get_job(workflow_id)).status == "finished"
            assert all(phase == "result" for phase, _ in (await journal(db, workflow_id)).values())
        finally:
            await second.stop()


async def test_sigkill_before_the_node_acknowledged_runs_the_step_once_under_a_new_id(tmp_path: Path) -> None:
    db, data_dir = tmp_path / "wc.db", tmp_path / "data"
    async with bench(tmp_path) as b:
        # Given a child workcell SIGKILLed while the node is creating the third step's action (the request is
        # held at the node's door), so the step was never journaled "acknowledged"; the node then creates it
        create = b.doors["platereader_1"].hold("POST", "/action/read_plate")
        workflow_id = await run_child_until(b, tmp_path, create.arrived, "the create request for read_plate")
        create.release.set()
        await until(create.handled, "the node to create the action")
        never_started = json.loads(create.body)["action_id"]
        assert b.reader.action_status(never_started) == ActionStatus.NOT_STARTED
        phases = await journal(db, workflow_id)
        assert sorted(phase for phase, _ in phases.values()) == ["result", "result"]
        b.reader.release.set()
        # When a new workcell starts on the same file
        second = await resume_in_this_process(db, data_dir, b)
        try:
            done = await second.wait_for(workflow_id, timeout_s=WAIT_S)
            # Then the step ran once, under a new action id (the one created before the kill never started)
            await assert_each_step_ran_once(b, second, done)
            assert done.steps[2].result.action_id != never_started
            assert b.reader.action_status(never_started) == ActionStatus.NOT_STARTED
            assert b.doors["platereader_1"].count("POST", "/action/read_plate") == 2
            assert (await second.jobs.get_job(workflow_id)).status == "finished"
        finally:
            await second.stop()


async def test_sigkill_after_the_node_acknowledged_but_before_the_start_starts_it_once(
    tmp_path: Path,
) -> None:
    db, data_dir = tmp_path / "wc.db", tmp_path / "data"
    async with bench(tmp_path) as b:
        # Given a child workcell SIGKILLed after the third step was journaled "acknowledged" and while its
        # start request is held at the node's door; the start never reaches the node
        start = b.doors["platereader_1"].hold("POST", "/start")
        start.forward = False
        workflow_id = await run_child_until(b, tmp_path, start.arrived, "the start request for read_plate")
        start.release.set()
        await until(start.handled, "the start request to be refused")
        phases = await journal(db, workflow_id)
        (action_id,) = [aid for aid, (phase, data) in phases.items() if data["action"] == "read_plate"]
        assert phases[action_id][0] == "acknowledged"
        assert b.reader.action_status(action_id) == ActionStatus.NOT_STARTED
        b.reader.release.set()
        # When a new workcell starts on the same file
        second = await resume_in_this_process(db, data_dir, b)
        try:
            done = await second.wait_for(workflow_id, timeout_s=WAIT_S)
            # Then it starts that very action by the id the node acknowledged (it is not created again):
            # the step ran once, under that id
            await assert_each_step_ran_once(b, second, done)
            assert done.steps[2].result.action_id == action_id
            assert b.doors["platereader_1"].count("POST", "/action/read_plate") == 1
            assert (await second.jobs.get_job(workflow_id)).status == "finished"
        finally:
            await second.stop()


async def test_sigkill_after_a_step_end_committed_without_fsync_runs_the_next_step_once(
    tmp_path: Path,
) -> None:
    db, data_dir = tmp_path / "wc.db", tmp_path / "data"
    async with bench(tmp_path) as b:
        # Given a child workcell SIGKILLed right after the second step's end was committed (without waiting
        # for the disk: a next step follows, whose "acknowledged" would have flushed it) and before anything
        # of the third step reached its node (its create is held at the door, then refused)
        create = b.doors["platereader_1"].hold("POST", "/action/read_plate")
        create.forward = False
        workflow_id = await run_child_until(b, tmp_path, create.arrived, "the create request for read_plate")
        create.release.set()
        await until(create.handled, "the create request to be refused")
        # Then the end survived the process's death (committed, in the operating system's hands), the third
        # step has no journal and the node has no action for it
        phases = await journal(db, workflow_id)
        assert sorted((data["action"], phase) for phase, data in phases.values()) == [
            ("home", "result"),
            ("refill_tips", "result"),
        ]
        assert started_on_nodes(b)["platereader_1"] == []
        b.reader.release.set()
        # When a new workcell starts on the same file
        second = await resume_in_this_process(db, data_dir, b)
        try:
            done = await second.wait_for(workflow_id, timeout_s=WAIT_S)
            # Then the third step ran once (the first two were not run again) and the workflow completed
            await assert_each_step_ran_once(b, second, done)
            assert b.doors["platereader_1"].count("POST", "/action/read_plate") == 1
            assert (await second.jobs.get_job(workflow_id)).status == "finished"
        finally:
            await second.stop()
