"""A node that errors, is locked or paused: the waiting workflow says which node and why, and the operator's
command (``podium workcell node NAME reset|unlock|resume``, MADSci's ``POST /admin/{command}/{node}``)
lets it go on. End to end: simulated instruments over HTTP, the workcell served by uvicorn, the CLI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from podium.cli import app
from podium.nodes import serve_nodes
from podium.nodes.sim import FailurePlan, SealerNode, make_sim_nodes
from podium.wire.workcell import NodeRecord
from podium.workcell.scheduler import node_reason
from podium.workcell.server import build_engine, serve_workcell

TOKEN = "test-token-node-admin"
SEAL = {"name": "seal", "steps": [{"name": "Seal", "node": "sealer_1", "action": "seal"}]}


async def cli(*args: str) -> Any:
    """``podium <args>`` in a thread (the nodes and the workcell are served by this test's event loop)."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


@pytest.fixture
async def cell(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, str, SealerNode]]:
    nodes = make_sim_nodes(default_duration_s=0.0, work_dir=tmp_path / "nodes")
    async with serve_nodes(nodes) as urls:
        engine = build_engine(
            None,
            data_dir=tmp_path / "data",
            nodes=dict(urls),
            scheduler_update_interval=30.0,
            node_update_interval=0.2,
        )
        async with serve_workcell(engine, token=TOKEN) as url_with_token:
            url = "http://" + url_with_token.split("@", 1)[1]
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
                sealer = nodes["sealer_1"]
                assert isinstance(sealer, SealerNode)
                yield http, url, sealer


async def submit(http: httpx.AsyncClient) -> str:
    def_id = (await http.post("/workflow_definition", json=SEAL)).json()
    r = await http.post("/workflow", data={"workflow_definition_id": def_id})
    assert r.status_code == 200, r.text
    return str(r.json()["workflow_id"])


async def until(http: httpx.AsyncClient, wf_id: str, check: Any, what: str) -> dict[str, Any]:
    """Long-poll the workflow until ``check(doc)`` holds (20 s at most)."""
    async with asyncio.timeout(20):
        while True:
            doc = (await http.get(f"/workflow/{wf_id}", params={"wait_s": 5})).json()
            if check(doc):
                return doc  # type: ignore[no-any-return]
            assert not (doc["status"]["completed"] or doc["status"]["failed"]), (what, doc["status"])


async def test_an_errored_node_is_explained_and_reset_from_the_cli_lets_the_workflow_go_on(
    cell: tuple[httpx.AsyncClient, str, SealerNode],
) -> None:
    http, url, sealer = cell
    # Given: the sealer faults on its next action (the fault needs a reset, as MADSci's SDK marks it)
    sealer.failures = FailurePlan(fail_next=1, errored=True, message="heater fault")
    first = await submit(http)
    done = await until(http, first, lambda d: d["status"]["failed"] or d["status"]["completed"], "first")
    assert done["status"]["failed"] is True
    # When: another workflow needs the sealer
    second = await submit(http)
    doc = await until(
        http, second, lambda d: "errored" in " ".join(d["scheduler_metadata"]["reasons"]), "wait"
    )
    # Then: its reasons and its status name the node, its state, the fault and the operator's command
    [reason] = doc["scheduler_metadata"]["reasons"]
    assert reason.startswith("Node sealer_1 is errored (") and "heater fault" in reason, reason
    assert "podium workcell node sealer_1 reset" in reason and "POST /admin/reset/sealer_1" in reason
    assert doc["status"]["description"] == f"Queued on step 0: {reason}"
    assert doc["status"]["waiting_for"] == reason
    shown = await cli("workcell", "node", "sealer_1", "--url", url, "--token", TOKEN)
    assert shown.exit_code == 0 and "sealer_1 is errored" in shown.output, shown.output
    # When: the operator resets the node from the CLI
    reset = await cli("workcell", "node", "sealer_1", "reset", "--url", url, "--token", TOKEN)
    assert reset.exit_code == 0, (reset.output, reset.exception)
    assert "sealer_1 reset: done" in reset.output and "sealer_1: ready" in reset.output
    # Then: the waiting workflow goes on and completes, and no longer says it waits
    doc = await until(http, second, lambda d: d["status"]["completed"], "after reset")
    assert doc["status"]["waiting_for"] is None and doc["status"]["description"] == "Completed Successfully"


@pytest.mark.parametrize(("hold", "release"), [("lock", "unlock"), ("pause", "resume")])
async def test_a_locked_or_paused_node_names_the_command_that_releases_it(
    cell: tuple[httpx.AsyncClient, str, SealerNode], hold: str, release: str
) -> None:
    http, url, _ = cell
    # Given: the operator holds the sealer through the workcell (MADSci's route)
    r = await http.post(f"/admin/{hold}/sealer_1")
    assert r.status_code == 200 and r.json()["success"] is True, r.text
    wf_id = await submit(http)
    word = {"lock": "locked", "pause": "paused"}[hold]
    doc = await until(http, wf_id, lambda d: word in (d["status"]["waiting_for"] or ""), "held")
    assert f"Node sealer_1 is {word}: an operator {release}s it" in doc["status"]["waiting_for"]
    assert f"podium workcell node sealer_1 {release}" in doc["scheduler_metadata"]["reasons"][0]
    # When: released from the CLI, then the workflow runs
    out = await cli("workcell", "node", "sealer_1", release, "--url", url, "--token", TOKEN)
    assert out.exit_code == 0, out.output
    doc = await until(http, wf_id, lambda d: d["status"]["completed"], "released")
    assert doc["status"]["completed"] is True


async def test_admin_commands_refuse_what_cannot_be_sent(
    cell: tuple[httpx.AsyncClient, str, SealerNode],
) -> None:
    http, url, _ = cell
    r = await http.post("/admin/explode/sealer_1")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["command"], r.text
    assert (await http.post("/admin/reset/no_such_node")).status_code == 404
    out = await cli("workcell", "node", "no_such_node", "reset", "--url", url, "--token", TOKEN)
    assert out.exit_code == 1 and "404" in out.output


def test_node_reason_names_state_and_command() -> None:
    def rec(**status: Any) -> NodeRecord:
        return NodeRecord(node_url="http://podium:secret@127.0.0.1:2000", status=status or None)

    assert node_reason("arm", NodeRecord(node_url="http://x")) == "Node arm status unknown (not read yet)"
    gone = node_reason("arm", rec(disconnected=True, errors=[{"message": "connection refused"}]))
    assert (
        gone.startswith("Node arm is disconnected") and "secret" not in gone and "connection refused" in gone
    )
    assert "an operator resets it" in node_reason("arm", rec(errored=True, errors=[{"message": "jam"}]))
    assert "(jam)" in node_reason("arm", rec(errored=True, errors=[{"message": "jam"}]))
    assert "resets it" in node_reason("arm", rec(stopped=True))
    assert node_reason("arm", rec(busy=True, running_actions=["a1"])) == "Node arm is busy (running a1)"
    assert node_reason("arm", rec(initializing=True)) == "Node arm is initializing"
