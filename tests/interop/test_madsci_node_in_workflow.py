"""An unmodified node written with MADSci 0.8.1's ``madsci.node_module`` runs the steps of a podium workflow.

The node is ``madsci_node_app.py``, run by the MADSci peer venv's python (it imports no podium). podium's
workcell engine (Python API, SQLite store in ``tmp_path``) drives it over HTTP through one workflow with:
an argument from a workflow parameter, a file input uploaded with the submission, a file output that
becomes a datapoint (byte-checked), that file fed forward into a later step, and locations.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from bench.peervenv import MADSCI_NODE

from podium.nodes import ActionStatus
from podium.store.sqlite import SQLiteStore
from podium.workcell import (
    WorkcellDefinition,
    WorkcellEngine,
    WorkcellManagerSettings,
    load_workflow_definition,
)

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent
REQUIREMENTS = MADSCI_NODE
PEER_VENVS = [("madsci-node", REQUIREMENTS)]  # built before the tests run (tests/conftest.py)
REPORT = b"i,value\n0,0\n1,1\n2,4\n3,9\n"


@pytest.fixture(scope="module")
def madsci_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The MADSci node on a free loopback port, once its ``/status`` says ready."""
    from bench.peervenv import peer_python

    python = peer_python("madsci-node", REQUIREMENTS)
    workdir = tmp_path_factory.mktemp("madsci-node")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    url = f"http://127.0.0.1:{port}"
    with (workdir / "node.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(python), str(HERE / "madsci_node_app.py"), str(port), str(workdir)],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            deadline = time.monotonic() + 45
            with httpx.Client(timeout=1.0) as http:
                while True:
                    assert proc.poll() is None, f"the MADSci node exited with {proc.returncode}"
                    try:
                        if http.get(f"{url}/status").json().get("ready"):
                            break
                    except httpx.HTTPError:
                        pass
                    assert time.monotonic() < deadline, f"the MADSci node at {url} was not ready in 45 s"
                    time.sleep(0.1)  # a process coming up: there is no event to wait on
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


async def test_an_unmodified_madsci_node_runs_the_steps_of_a_podium_workflow(
    madsci_node: str, tmp_path: Path
) -> None:
    workcell = WorkcellDefinition(
        name="interop_cell",
        # The workcell's alias for the node differs from the node's own name ("interop_node").
        nodes={"madsci_node": madsci_node},
        locations=[
            {"location_name": "deck", "representations": {"madsci_node": {"x": 1.5, "y": 2.0}}},
            {"location_name": "tray", "representations": {"madsci_node": "B2"}},
        ],
    )
    definition = load_workflow_definition(
        {
            "name": "madsci node in a podium workflow",
            "parameters": {
                "json_inputs": [{"key": "a"}, {"key": "rows", "default": 4}],
                "file_inputs": [{"key": "sample"}],
                "feed_forward": [
                    {"key": "report_file", "step": "report", "label": "report_csv", "type": "file"},
                ],
            },
            "steps": [
                {
                    "name": "add",
                    "key": "add",
                    "node": "madsci_node",
                    "action": "add",
                    "args": {"a": "${a}", "b": 3},
                },
                {
                    "name": "count sample",
                    "key": "count",
                    "node": "madsci_node",
                    "action": "count_bytes",
                    "files": {"data": "sample"},
                },
                {
                    "name": "report",
                    "key": "report",
                    "node": "madsci_node",
                    "action": "make_report",
                    "args": {"rows": "${rows}"},
                    "data_labels": {"file": "report_csv"},
                },
                {
                    "name": "count report",
                    "key": "count_report",
                    "node": "madsci_node",
                    "action": "count_bytes",
                    "files": {"data": "report_file"},
                },
                {
                    "name": "move",
                    "key": "move",
                    "node": "madsci_node",
                    "action": "move",
                    "locations": {"source": "deck", "target": "tray"},
                },
            ],
        }
    )
    sample = tmp_path / "sample.bin"
    sample.write_bytes(b"podium->madsci \x00\x01\x02")
    settings = WorkcellManagerSettings(data_dir=tmp_path / "data")
    engine = WorkcellEngine(
        workcell,
        store=SQLiteStore(tmp_path / "wc.db"),
        data_dir=tmp_path / "data",
        settings=settings,
        own_store=True,
    )
    async with engine:
        run = await engine.submit(definition, json_inputs={"a": 2}, file_inputs={"sample": sample})
        done = await engine.wait_for(run.workflow_id, timeout_s=30)
        assert done.status.completed, (done.status.description, [s.result for s in done.steps])
        assert [s.status for s in done.steps] == [ActionStatus.SUCCEEDED] * 5

        async def value(step: str) -> object:
            return (await engine.datapoints.get(done.get_datapoint_id(step, "json_result"))).value

        # Arguments, one of them from a workflow parameter.
        assert await value("add") == {"sum": 5}
        # A file input uploaded with the submission reached the node's action.
        assert await value("count") == {"n_bytes": 18, "first": "podium->"}
        # The node's file output is a datapoint with the step's label, stored byte for byte.
        report = await engine.datapoints.get(done.get_datapoint_id("report", "report_csv"))
        assert report.data_type == "file" and report.workflow_id == run.workflow_id
        assert engine.datapoints.file_path(report).read_bytes() == REPORT
        # ... and, fed forward, the input file of a later step on the same node.
        assert done.file_input_ids["report_file"] == report.datapoint_id
        assert await value("count_report") == {"n_bytes": len(REPORT), "first": REPORT[:8].decode()}
        # Locations arrive as the node's own representation, with the location's name.
        assert await value("move") == {"from": {"x": 1.5, "y": 2.0}, "to": "B2", "names": ["deck", "tray"]}
        # podium's journal has the node's own action id for every step.
        assert all(s.result is not None and s.result.action_id for s in done.steps)
