"""The daily commands (``podium submit|workflows|workflow|pause|resume|cancel|retry|nodes|node``,
``podium jobs|job|workers``, ``podium blueprint graph``, ``podium flow viz``) end to end against real servers
on loopback, through typer's runner; exit codes as documented in ``docs/cli.md``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from podium.cli import app
from podium.cli._output import ExitCode
from podium.engine import InProcessWorker
from podium.testing import EngineHarness, join
from podium.workcell.demo import DEMO_DIR
from tests.demo_lab import served_demo_lab
from tests.server.harness import CLIENT_TOKEN, approval_blueprint, running_stack, transcode_blueprint

ROOT = Path(__file__).resolve().parents[2]


async def run(*args: str, code: ExitCode = ExitCode.OK) -> Result:
    """``podium <args>`` in a thread (the servers are served by this test's event loop)."""
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == code, (args, result.output, result.exception)
    return result


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[tuple[str, str, dict[str, Any]]]:
    """The demo workcell on simulated instruments, served on loopback: (url, token, nodes)."""
    async with served_demo_lab(tmp_path, action_s=0.0) as served:
        yield served


def workflow_file(tmp_path: Path, name: str, steps: list[dict[str, Any]], **extra: Any) -> Path:
    path = tmp_path / f"{name}.workflow.yaml"
    path.write_text(yaml.safe_dump({"name": name, "steps": steps, **extra}))
    return path


async def test_submit_wait_shows_steps_and_datapoints(lab: tuple[str, str, dict[str, Any]]) -> None:
    url, token, _ = lab
    conn = ["--url", url, "--token", token]
    # Given the demo plate assay, submitted with an input and followed to the end
    wf = str(DEMO_DIR / "plate_assay.workflow.yaml")
    result = await run("submit", wf, "--input", "volume_ul=60", "--wait", *conn)
    # Then each step was reported as it ended, and the datapoints were printed at the end
    assert "read absorbance" in result.output and "done" in result.output
    workflow_id, state = result.stdout.split("\n")[-1 - result.stdout.count("\n") :][0].split()[:2]
    assert state == "completed"
    assert "summary" in result.stdout and "absorbance_csv" in result.stdout and "file " in result.stdout
    # `--json` carries the same for scripts
    doc = json.loads((await run("workflow", workflow_id, "--json", *conn)).stdout)
    assert doc["steps"][1]["args"] == {"volume_ul": 60, "well": "A1"}
    shown = (await run("workflow", workflow_id, *conn)).stdout
    assert "aspirate reagent" in shown and "succeeded" in shown
    listed = json.loads((await run("workflows", "--archived", "5", "--json", *conn)).stdout)
    assert [w["workflow_id"] for w in listed] == [workflow_id]


async def test_operations_on_a_held_workflow(lab: tuple[str, str, dict[str, Any]], tmp_path: Path) -> None:
    url, token, _ = lab
    conn = ["--url", url, "--token", token]
    hold = workflow_file(tmp_path, "hold", [{"name": "hold", "action": "wait", "args": {"seconds": 600}}])
    held = (await run("submit", str(hold), *conn)).stdout.split()[0]
    assert held in (await run("workflows", *conn)).stdout
    assert (await run("pause", held, *conn)).stdout.split() == [held, "paused"]
    assert json.loads((await run("workflows", "--json", *conn)).stdout)[0]["status"]["paused"] is True
    assert (await run("resume", held, *conn)).stdout.split()[1] in {"running", "queued"}
    assert (await run("cancel", held, *conn)).stdout.split() == [held, "cancelled"]
    # A cancelled workflow cannot be paused: the state conflict has its own exit code
    await run("pause", held, *conn, code=ExitCode.CONFLICT)
    assert (await run("retry", held, "--from-step", "0", *conn)).stdout.split()[1] in {"running", "queued"}
    await run("cancel", held, *conn)


async def test_a_failed_workflow_and_an_errored_node(
    lab: tuple[str, str, dict[str, Any]], tmp_path: Path
) -> None:
    url, token, nodes = lab
    conn = ["--url", url, "--token", token]
    # Given a sealer whose next seal fails and leaves it errored
    nodes["sealer_1"].inject_failure(fail_next=1, actions=["seal"], errored=True, message="heater fault")
    seal = workflow_file(tmp_path, "seal", [{"name": "seal", "node": "sealer_1", "action": "seal"}])
    # When it is submitted with --wait, the command fails with exit 1 and names the step
    failed = await run("submit", str(seal), "--wait", *conn, code=ExitCode.FAILED)
    assert failed.stdout.split()[1] == "failed"
    assert "failed on step 0 'seal': " in failed.stderr and "heater fault" in failed.stderr
    # Then `nodes` shows the sealer errored, and `node sealer_1 reset` brings it back
    state = json.loads((await run("nodes", "--json", *conn)).stdout)
    assert state["sealer_1"]["condition"] == "errored" and state["robotarm_1"]["condition"] == "ready"
    assert "errored" in (await run("nodes", *conn)).stdout
    assert (await run("node", "sealer_1", "reset", *conn)).stdout.strip().endswith("now ready")
    # Lock and unlock go through the same command
    locked = json.loads((await run("node", "sealer_1", "lock", "--json", *conn)).stdout)
    assert locked["condition"] == "locked"
    await run("node", "sealer_1", "unlock", *conn)
    shown = (await run("node", "sealer_1", *conn)).stdout
    assert "seal" in shown and "ready" in shown


async def test_exit_codes_for_what_goes_wrong(lab: tuple[str, str, dict[str, Any]], tmp_path: Path) -> None:
    url, token, _ = lab
    missing = await run(
        "workflow", "01J0000000000000000000000X", "--url", url, "--token", token, code=ExitCode.NOT_FOUND
    )
    assert missing.output.startswith("error: ") and missing.output.count("\n") == 1
    refused = await run("workflows", "--url", url, "--token", "wrong", code=ExitCode.AUTH)
    assert "401" in refused.output and "--token" in refused.output
    await run("nodes", "--url", "http://127.0.0.1:9", "--token", token, code=ExitCode.UNREACHABLE)
    await run("submit", str(tmp_path / "nope.yaml"), "--url", url, "--token", token, code=ExitCode.USAGE)
    await run(
        "submit",
        str(DEMO_DIR / "plate_assay.workflow.yaml"),
        "-i",
        "novalue",
        "--url",
        url,
        code=ExitCode.USAGE,
    )
    bad = workflow_file(tmp_path, "bad", [{"name": "x", "node": "sealer_1", "action": "no_such_action"}])
    refused_wf = await run("submit", str(bad), "--url", url, "--token", token, code=ExitCode.USAGE)
    assert "no_such_action" in refused_wf.output
    await run("node", "sealer_1", "explode", "--url", url, "--token", token, code=ExitCode.USAGE)


async def test_jobs_job_workers_and_blueprint_graph() -> None:
    worker = InProcessWorker(
        "local-1", skills={"video_transcoding": lambda: {"status": "success", "data": {}}}
    )

    harness = EngineHarness(blueprints=[transcode_blueprint(), approval_blueprint()], workers=[worker])
    async with running_stack(harness.engine) as stack:
        conn = ["--url", stack.url, "--token", CLIENT_TOKEN]
        job_id = await stack.engine.create_job("transcode", {"path": "a.mov"})
        await join(stack.engine, job_id)
        listed = json.loads((await run("jobs", "--json", *conn)).stdout)
        assert [j["id"] for j in listed] == [job_id]
        assert job_id in (await run("jobs", "--blueprint", "transcode", *conn)).stdout
        assert json.loads((await run("jobs", "--status", "running", "--json", *conn)).stdout) == []
        shown = (await run("job", job_id, *conn)).stdout
        assert "job_created" in shown and "history" in shown
        doc = json.loads((await run("job", job_id, "--json", *conn)).stdout)
        assert doc["job"]["id"] == job_id and doc["history"][0]["event"] == "job_created"
        workers = json.loads((await run("workers", "--json", *conn)).stdout)
        assert [w["worker_id"] for w in workers] == ["local-1"]
        assert "local-1" in (await run("workers", *conn)).stdout
        graph = (await run("blueprint", "graph", "transcode", *conn)).stdout
        assert graph.startswith(("stateDiagram", "graph", "flowchart")) and "start" in graph
        await run("blueprint", "graph", "nope", *conn, code=ExitCode.NOT_FOUND)
        await run("job", "nope", *conn, code=ExitCode.NOT_FOUND)
        await run("jobs", "--url", stack.url, "--token", "wrong", code=ExitCode.AUTH)


async def test_blueprint_graph_from_a_folder_and_flow_viz(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = (
        await run("blueprint", "graph", "transcode", "--blueprints", str(ROOT / "examples" / "server"))
    ).stdout
    assert "start" in graph
    await run(
        "blueprint",
        "graph",
        "nope",
        "--blueprints",
        str(ROOT / "examples" / "server"),
        code=ExitCode.NOT_FOUND,
    )
    (tmp_path / "my_flows.py").write_text(
        "from podium.flow import Node, create\n"
        "async def up(msg, ctx):\n    return msg\n"
        "async def out(msg, ctx):\n    return msg\n"
        "def build():\n"
        "    a, b = Node(up, name='upper'), Node(out, name='printer')\n"
        "    return create(a.to(b))\n"
    )
    monkeypatch.chdir(tmp_path)
    drawn = (await run("flow", "viz", "my_flows:build")).stdout
    assert "upper" in drawn and "printer" in drawn
    assert "digraph" in (await run("flow", "viz", "my_flows:build", "--format", "dot")).stdout
    await run("flow", "viz", "my_flows:nope", code=ExitCode.NOT_FOUND)
    await run("flow", "viz", "my_flows", code=ExitCode.USAGE)


async def test_submit_with_a_file_input(lab: tuple[str, str, dict[str, Any]], tmp_path: Path) -> None:
    url, token, _ = lab
    protocol = tmp_path / "proto.txt"
    protocol.write_text("aspirate 10\ndispense 10\n")
    wf = workflow_file(
        tmp_path,
        "proto",
        [
            {
                "name": "run",
                "key": "run",
                "node": "liquidhandler_1",
                "action": "run_protocol",
                "files": {"protocol": "protocol"},
            }
        ],
        parameters={"file_inputs": [{"key": "protocol"}]},
    )
    # The file goes up with the run, the node runs it, and its result is printed at the end
    out = await run(
        "submit",
        str(wf),
        "--file",
        f"protocol={protocol}",
        "--wait",
        "--json",
        "--url",
        url,
        "--token",
        token,
    )
    doc = json.loads(out.stdout)
    assert doc["workflow"]["status"]["completed"] is True
    assert doc["workflow"]["file_input_ids"]["protocol"]
    await run(
        "submit",
        str(wf),
        "--file",
        f"protocol={tmp_path / 'nope.txt'}",
        "--url",
        url,
        "--token",
        token,
        code=ExitCode.USAGE,
    )
