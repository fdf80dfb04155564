"""The node SDK serves MADSci's routes and status model (through the ASGI app, no sockets)."""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path
from typing import Annotated, Any

import pytest

from podium.clock import ManualClock
from podium.ids import new_ulid_str
from podium.nodes import ActionFailed, ActionFiles, LocationArgument, RestNode, action
from podium.testing import drive
from podium.wire.madsci_node import LONG_POLL_HEADER, ActionRequest, NodeInfo, NodeStatus


class Outputs(ActionFiles):
    table: Path
    notes: Path


class DemoNode(RestNode):
    """A node for tests."""

    node_name = "demo"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = asyncio.Event()

    @action
    def add(self, a: int, b: Annotated[int, "the second number"] = 1) -> dict[str, int]:
        """Add two numbers.

        More text that is not the description.
        """
        return {"sum": a + b}

    @action
    async def wait_gate(self) -> str:
        """Wait until the test opens the gate."""
        await self.gate.wait()
        return "opened"

    @action(blocking=False)
    async def peek(self) -> int:
        """A non-blocking action."""
        return 42

    @action
    async def sleep(self, seconds: float) -> None:
        """Sleep on the node's clock."""
        await self.clock.sleep(seconds)

    @action(name="count")
    async def count_bytes(self, data: Path, extra: list[Path] | None = None) -> dict[str, int]:
        """Count bytes of the uploads."""
        return {"n": len(data.read_bytes()), "extra": len(extra or [])}

    @action
    async def report(self, rows: int, action: ActionRequest) -> Path:
        """Write a report file."""
        path = self.output_path("report.csv")
        path.write_text("".join(f"{i}\n" for i in range(rows)))
        assert action.args == {"rows": rows}
        return path

    @action
    async def two_files(self) -> tuple[dict[str, str], Outputs]:
        """Two labelled files and JSON."""
        table, notes = self.output_path("t.csv"), self.output_path("n.txt")
        table.write_text("a,b\n")
        notes.write_text("hello")
        return {"kind": "two"}, Outputs(table=table, notes=notes)

    @action
    async def move(self, source: LocationArgument, target: LocationArgument | None = None) -> dict[str, Any]:
        """Locations in, what arrived out."""
        return {"source": source.representation, "name": source.location_name, "target": target}

    @action
    async def refuse(self) -> None:
        """Fails cleanly."""
        raise ActionFailed("not today", error_type="Refused")

    @action
    async def crash(self) -> None:
        """Fails with an unexpected exception: the node becomes errored."""
        raise RuntimeError("kaboom")


async def start(http: Any, name: str, args: dict[str, Any] | None = None, **body: Any) -> dict[str, Any]:
    created = await http.post(f"/action/{name}", json={"args": args or {}, **body})
    assert created.status_code == 200, created.text
    aid = created.json()["action_id"]
    started = await http.post(f"/action/{name}/{aid}/start")
    assert started.status_code == 200
    return dict(started.json())


async def settle(http: Any, name: str, aid: str) -> dict[str, Any]:
    status = await http.get(f"/action/{name}/{aid}/status", params={"wait_s": 5})
    assert status.json() in {"succeeded", "failed", "cancelled"}
    return dict((await http.get(f"/action/{name}/{aid}/result")).json())


@pytest.fixture
async def node(tmp_path: Path):  # type: ignore[no-untyped-def]
    n = DemoNode(work_dir=tmp_path / "demo")
    yield n
    await n.aclose()


async def test_info_describes_actions_like_madsci(node: DemoNode, http_for: Any) -> None:
    http = http_for(node)
    info = NodeInfo.model_validate((await http.get("/info")).json())
    assert info.node_name == "demo" and info.module_name == "demo_node"
    add = info.actions["add"]
    assert add.description == "Add two numbers."
    assert add.args["a"].required and add.args["a"].argument_type == "int"
    assert not add.args["b"].required and add.args["b"].default == 1
    assert add.args["b"].description == "the second number"
    assert add.results["json_result"].result_type == "json" and add.blocking
    assert not info.actions["peek"].blocking
    count = info.actions["count"]
    assert (
        set(count.files) == {"data", "extra"}
        and count.files["data"].required
        and not count.files["extra"].required
    )
    assert info.actions["report"].results["file"].result_type == "file"
    assert set(info.actions["two_files"].results) == {"json_result", "table", "notes"}
    assert info.actions["move"].locations["source"].required
    assert not info.actions["move"].locations["target"].required
    assert "action" not in info.actions["report"].args
    assert info.capabilities is not None
    assert {"lock", "unlock", "reset", "pause", "resume", "cancel", "shutdown"} <= set(
        info.capabilities.admin_commands
    )


async def test_action_with_args_and_history(node: DemoNode, http_for: Any) -> None:
    http = http_for(node)
    first = await start(http, "add", {"a": 2, "b": 3})
    aid = first["action_id"]
    result = await settle(http, "add", aid)
    assert result["status"] == "succeeded" and result["json_result"] == {"sum": 5} and result["files"] is None
    assert (await http.get(f"/action/{aid}/result")).json()["json_result"] == {"sum": 5}
    assert (await http.get(f"/action/{aid}/status")).json() == "succeeded"
    history = (await http.get("/action", params={"action_id": aid})).json()[aid]
    assert [h["status"] for h in history] == ["running", "succeeded"]
    assert aid in (await http.get("/action")).json()


async def test_bad_args_are_422_naming_the_field_and_unknown_action_404(
    node: DemoNode, http_for: Any
) -> None:
    http = http_for(node)
    bad = await http.post("/action/add", json={"args": {"a": "not a number"}})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "args", "a"]
    missing = await http.post("/action/add", json={"args": {}})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "args", "a"]
    assert (await http.post("/action/nope", json={"args": {}})).status_code == 404


async def test_unknown_ids_answer_unknown_as_madsci(node: DemoNode, http_for: Any) -> None:
    http = http_for(node)
    aid = new_ulid_str()
    assert (await http.get(f"/action/add/{aid}/status")).json() == "unknown"
    result = (await http.get(f"/action/add/{aid}/result")).json()
    assert result["status"] == "unknown" and result["errors"][0]["error_type"] == "ActionHistoryNotFound"
    started = (await http.post(f"/action/add/{aid}/start")).json()
    assert started["status"] == "failed" and started["errors"][0]["error_type"] == "NotFound"


async def test_caller_chosen_id_makes_create_and_start_idempotent(node: DemoNode, http_for: Any) -> None:
    http = http_for(node)
    aid = new_ulid_str()
    for _ in range(2):
        created = await http.post("/action/add", json={"args": {"a": 1}, "action_id": aid})
        assert created.json() == {"action_id": aid}
    assert (await http.get(f"/action/add/{aid}/status")).json() == "not_started"
    await http.post(f"/action/add/{aid}/start")
    again = (await http.post(f"/action/add/{aid}/start")).json()
    assert again["action_id"] == aid and again["status"] in {"running", "succeeded"}
    assert (await settle(http, "add", aid))["json_result"] == {"sum": 2}


async def test_file_uploads_single_and_list(node: DemoNode, http_for: Any) -> None:
    http = http_for(node)
    aid = (await http.post("/action/count", json={"args": {}})).json()["action_id"]
    up = await http.post(f"/action/count/{aid}/upload/data", files={"file": ("d.bin", b"12345")})
    assert up.json() == {"status": "uploaded", "file_arg": "data"}
    up = await http.post(
        f"/action/count/{aid}/upload/extra", files=[("files", ("a", b"1")), ("files", ("b", b"2"))]
    )
    assert up.json()["file_count"] == 2
    await http.post(f"/action/count/{aid}/start")
    assert (await settle(http, "count", aid))["json_result"] == {"n": 5, "extra": 2}
    bad = await http.post(f"/action/count/{aid}/upload/nope", files={"file": ("x", b"1")})
    assert bad.status_code == 404


async def test_missing_required_file_fails_the_action(node: DemoNode, http_for: Any) -> None:
    http = http_for(node)
    result = await start(http, "count")
    assert result["status"] == "failed" and "data" in result["errors"][0]["message"]
    assert (await http.get("/status")).json()["errored"] is False


async def test_file_results_download_as_zip(node: DemoNode, http_for: Any) -> None:
    http = http_for(node)
    aid = (await start(http, "report", {"rows": 3}))["action_id"]
    result = await settle(http, "report", aid)
    assert result["files"] == ["file"]
    response = await http.get(f"/action/report/{aid}/download")
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        assert zf.namelist() == ["report.csv"] and zf.read("report.csv") == b"0\n1\n2\n"
    aid2 = (await start(http, "two_files"))["action_id"]
    result = await settle(http, "two_files", aid2)
    assert result["json_result"] == {"kind": "two"} and sorted(result["files"]) == ["notes", "table"]
    with zipfile.ZipFile(io.BytesIO((await http.get(f"/action/{aid2}/download")).content)) as zf:
        assert sorted(zf.namelist()) == ["notes.txt", "table.csv"]
    aid3 = (await start(http, "add", {"a": 1}))["action_id"]
    await settle(http, "add", aid3)
    assert (await http.get(f"/action/add/{aid3}/download")).status_code == 404


async def test_locations_arrive_as_location_arguments(node: DemoNode, http_for: Any) -> None:
    http = http_for(node)
    args = {"source": {"representation": [1, 2, 3], "location_name": "deck_1"}, "target": {"location": "B2"}}
    aid = (await start(http, "move", args))["action_id"]
    result = await settle(http, "move", aid)
    assert result["json_result"]["source"] == [1, 2, 3] and result["json_result"]["name"] == "deck_1"
    assert result["json_result"]["target"]["representation"] == "B2"


async def test_failures_clean_and_errored(node: DemoNode, http_for: Any) -> None:
    http = http_for(node)
    aid = (await start(http, "refuse"))["action_id"]
    result = await settle(http, "refuse", aid)
    assert result["status"] == "failed" and result["errors"][0] == {
        **result["errors"][0],
        "message": "not today",
        "error_type": "Refused",
    }
    assert NodeStatus.model_validate((await http.get("/status")).json()).ready
    aid = (await start(http, "crash"))["action_id"]
    assert (await settle(http, "crash", aid))["errors"][0]["error_type"] == "RuntimeError"
    status = (await http.get("/status")).json()
    assert status["errored"] and not status["ready"] and status["description"] == "Node is in an error state"
    refused = await start(http, "add", {"a": 1})
    assert refused["status"] == "not_ready" and refused["errors"][0]["error_type"] == "NodeNotReady"
    assert (await http.post("/admin/reset")).json()["success"]
    assert (await http.get("/status")).json()["ready"]


async def test_one_blocking_action_at_a_time_non_blocking_beside(node: DemoNode, http_for: Any) -> None:
    http = http_for(node)
    first = await start(http, "wait_gate")
    assert first["status"] == "running"
    status = (await http.get("/status")).json()
    assert status["busy"] and status["running_actions"] == [first["action_id"]] and not status["ready"]
    second = await start(http, "add", {"a": 1})
    assert second["status"] == "not_ready"
    node.gate.set()
    assert (await settle(http, "wait_gate", first["action_id"]))["json_result"] == "opened"
    status = (await http.get("/status")).json()
    assert not status["busy"] and status["ready"] and status["running_actions"] == []


async def test_long_poll_holds_until_the_action_ends(node: DemoNode, http_for: Any) -> None:
    http = http_for(node)
    aid = (await start(http, "wait_gate"))["action_id"]
    poll = asyncio.ensure_future(http.get(f"/action/wait_gate/{aid}/status", params={"wait_s": 20}))
    await asyncio.sleep(0.01)
    assert not poll.done()
    node.gate.set()
    response = await asyncio.wait_for(poll, 5)
    assert response.json() == "succeeded" and response.headers[LONG_POLL_HEADER] == "1"
    plain = await http.get(f"/action/wait_gate/{aid}/status")
    assert LONG_POLL_HEADER.lower() not in plain.headers


async def test_long_poll_times_out_on_the_node_clock(tmp_path: Path, http_for: Any) -> None:
    clock = ManualClock()
    node = DemoNode(clock=clock, work_dir=tmp_path / "d")
    http = http_for(node)
    aid = (await start(http, "sleep", {"seconds": 100}))["action_id"]
    response = await drive(clock, http.get(f"/action/sleep/{aid}/status", params={"wait_s": 3}))
    assert response.json() == "running" and clock.monotonic() == pytest.approx(3.0)
    response = await drive(clock, http.get(f"/action/sleep/{aid}/status", params={"wait_s": 300}))
    assert response.json() == "running" and clock.monotonic() == pytest.approx(33.0)  # held 30 s at most
    for _ in range(3):
        response = await drive(clock, http.get(f"/action/sleep/{aid}/status", params={"wait_s": 30}))
    assert response.json() == "succeeded" and clock.monotonic() == pytest.approx(100.0)
    await node.aclose()


async def test_admin_commands(node: DemoNode, http_for: Any) -> None:
    http = http_for(node)
    assert (await http.post("/admin/lock")).json() == {"success": True, "errors": [], "data": None}
    assert (await http.get("/status")).json()["locked"]
    assert (await start(http, "add", {"a": 1}))["status"] == "not_ready"
    await http.post("/admin/unlock")
    await http.post("/admin/pause")
    assert (await http.get("/status")).json()["description"] == "Node is paused"
    await http.post("/admin/resume")
    running = await start(http, "wait_gate")
    assert (await http.post("/admin/cancel")).json()["success"]
    assert (await settle(http, "wait_gate", running["action_id"]))["status"] == "cancelled"
    await http.post("/admin/safety_stop")
    assert (await http.get("/status")).json()["stopped"]
    await http.post("/admin/reset")
    assert (await http.get("/status")).json()["ready"]
    shutdown = (await http.post("/admin/shutdown")).json()
    assert shutdown["success"] is False  # nothing to stop when served by the ASGI transport
    nope = (await http.post("/admin/get_location")).json()
    assert nope["success"] is False and nope["errors"][0]["error_type"] == "AdminCommandNotImplemented"
    assert (await http.post("/admin/bogus")).status_code == 422
    assert (await http.post("/admin/AdminCommands.LOCK")).json()["success"]  # MADSci's client on 3.11
    assert node.status.locked


async def test_state_log_and_config(node: DemoNode, http_for: Any) -> None:
    http = http_for(node)
    node.node_state["temperature"] = 21.5
    assert (await http.get("/state")).json() == {"temperature": 21.5}
    await start(http, "add", {"a": 1})
    log = (await http.get("/log")).json()
    assert all(k == v["_id"] for k, v in log.items())
    assert {"node_start", "action_status_change"} <= {v["event_type"] for v in log.values()}
    assert (await http.post("/config", json={"speed": 2})).json() == {"success": True}
    assert (await http.get("/info")).json()["config"] == {"speed": 2}


async def test_history_limit_forgets_oldest_finished(tmp_path: Path, http_for: Any) -> None:
    node = DemoNode(work_dir=tmp_path / "d", history_limit=2)
    http = http_for(node)
    ids = []
    for _ in range(3):
        aid = (await start(http, "peek"))["action_id"]
        await settle(http, "peek", aid)
        ids.append(aid)
    history = (await http.get("/action")).json()
    assert list(history) == ids[1:]
    await node.aclose()
