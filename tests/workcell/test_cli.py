"""``podium workcell serve/submit/status/nodes/control/admin`` against simulated nodes, and the terminal
progress display."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from typer.testing import CliRunner

from podium.cli import app
from podium.client.workcell import _Progress
from podium.nodes import serve_nodes
from podium.nodes.sim import make_sim_nodes
from podium.wire.workcell import ActionStatus, Step, Workflow, WorkflowStatus
from podium.workcell.demo import DEMO_DIR

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def cli(*args: str) -> Any:
    """Run ``podium <args>`` in a thread (the simulated nodes are served by this test's event loop)."""
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args))
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


async def test_workcell_commands_against_sim_nodes(tmp_path: Path) -> None:
    nodes = make_sim_nodes(default_duration_s=0.0, work_dir=tmp_path / "nodes")
    async with serve_nodes(nodes) as urls:
        # Given `podium workcell serve` on a workcell file naming the simulated nodes
        workcell = yaml.safe_load((DEMO_DIR / "workcell.yaml").read_text())
        workcell["nodes"] = dict(urls)
        workcell["settings"] = {"scheduler_update_interval": 1.0, "node_update_interval": 1.0}
        wc_file = tmp_path / "workcell.yaml"
        wc_file.write_text(yaml.safe_dump(workcell))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        serve = ["workcell", "serve", "--port", str(port), "--workcell", str(wc_file)]
        server = subprocess.Popen(
            [sys.executable, "-m", "podium", *serve, "--data-dir", str(tmp_path / "data")],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )
        try:
            async with httpx.AsyncClient(base_url=url) as http:
                for _ in range(300):
                    try:
                        if (await http.get("/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
                    await asyncio.sleep(0.05)  # waiting for another process to listen: nothing to wait on
            # `nodes` lists them as ready
            out = (await cli("workcell", "nodes", "--url", url)).output
            for name in urls:
                assert name in out
            assert "yes" in out
            # `submit` runs a workflow to the end, with progress naming each step and the final state
            flow = tmp_path / "home.workflow.yaml"
            flow.write_text(
                yaml.safe_dump(
                    {
                        "name": "home_and_seal",
                        "parameters": [{"name": "temp", "default": 160}],
                        "steps": [
                            {"name": "home arm", "node": "robotarm_1", "action": "home"},
                            {
                                "name": "seal",
                                "node": "sealer_1",
                                "action": "seal",
                                "args": {"temperature_c": "$temp"},
                            },
                        ],
                    }
                )
            )
            result = await cli("workcell", "submit", str(flow), "--url", url, "-p", "temp=150")
            workflow_id, state = result.stdout.split()[-2:]
            assert state == "completed"
            assert "home arm" in result.output and "seal" in result.output
            assert "Completed Successfully" in result.output
            # `status` shows its steps; `--json` the whole record
            out = (await cli("workcell", "status", workflow_id, "--url", url)).output
            assert "home arm" in out and "succeeded" in out and "completed" in out
            doc = json.loads((await cli("workcell", "status", workflow_id, "--url", url, "--json")).output)
            assert doc["steps"][1]["args"] == {"temperature_c": 150}
            # `control` pauses, resumes and cancels a workflow held in a long built-in wait
            hold = tmp_path / "hold.workflow.yaml"
            hold.write_text(
                yaml.safe_dump(
                    {"name": "hold", "steps": [{"name": "hold", "action": "wait", "args": {"seconds": 600}}]}
                )
            )
            result = await cli("workcell", "submit", str(hold), "--url", url, "--no-wait")
            held_id = result.stdout.split()[-2]
            assert (await cli("workcell", "control", "pause", held_id, "--url", url)).output.split()[
                -1
            ] == "paused"
            queue = (await cli("workcell", "status", "--url", url)).output
            assert held_id in queue and "paused" in queue
            assert (await cli("workcell", "control", "resume", held_id, "--url", url)).output.split()[-1] in {
                "running",
                "queued",
            }
            assert (await cli("workcell", "control", "cancel", held_id, "--url", url)).output.split()[
                -1
            ] == "cancelled"
            out = (await cli("workcell", "control", "resubmit", workflow_id, "--url", url)).output
            assert out.split()[0] != workflow_id
            # `admin` pauses the whole workcell and resumes it
            assert "workcell paused" in (await cli("workcell", "admin", "pause", "--url", url)).output
            assert "workcell running" in (await cli("workcell", "admin", "resume", "--url", url)).output
            # A bad control action is a usage error
            bad = await asyncio.to_thread(
                CliRunner().invoke, app, ["workcell", "control", "explode", workflow_id, "--url", url]
            )
            assert bad.exit_code != 0
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            if server.stdout:
                server.stdout.close()


def test_progress_display_names_steps_and_the_final_state() -> None:
    out = io.StringIO()
    display = _Progress(Console(file=out, width=100, force_terminal=False, color_system=None))
    start = datetime(2025, 1, 1, tzinfo=UTC)
    steps = [
        Step(name="move plate", node="robotarm_1", action="transfer"),
        Step(name="read plate", node="platereader_1", action="read_plate"),
    ]
    wf = Workflow(name="plate assay", steps=steps, status=WorkflowStatus(running=True, has_started=True))
    display.update(wf)
    steps[0].status = ActionStatus.SUCCEEDED
    steps[0].start_time, steps[0].end_time, steps[0].duration = start, start, timedelta(seconds=1.5)
    wf.status.current_step_index = 1
    display.update(wf)
    steps[1].status = ActionStatus.SUCCEEDED
    wf.status = WorkflowStatus(current_step_index=1, completed=True, has_started=True)
    display.stop(wf)
    text = out.getvalue()
    assert "done 1/2 move plate on robotarm_1 in 1.5 s" in text
    assert "done 2/2 read plate on platereader_1" in text
    assert text.count("move plate") == 1  # each step is reported once
    assert "plate assay" in text and "Completed Successfully" in text and "2/2" in text
