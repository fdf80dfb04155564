"""MADSci 0.8's own example lab runs end to end on podium.

podium reads the lab's ``settings.yaml`` as MADSci has it (``examples/workcell/example_lab``; the node URLs
come from ``WORKCELL_NODES``, MADSci's variable), the five instruments are ``podium.nodes.sim``'s twins of
MADSci's example nodes, and MADSci 0.8.1's own ``WorkcellClient`` (its own venv) submits each of the lab's 7
workflow files and waits for it. Each completes; datapoints are read back through MADSci's ``DataClient``.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from bench.peervenv import MADSCI_WORKCELL

from podium.nodes.sim import make_example_lab_nodes
from podium.workcell.demo import serve_sim_nodes
from podium.workcell.server import build_engine, serve_workcell

pytestmark = [pytest.mark.interop, pytest.mark.timeout(150)]
HERE = Path(__file__).resolve().parent
LAB = HERE.parents[1] / "examples" / "workcell" / "example_lab"
MADSCI_WC = MADSCI_WORKCELL


async def set_up_the_lab(http: httpx.AsyncClient) -> dict[str, str]:
    """What a lab has before it runs these workflows: plates in place, and the two locations that
    ``example_workflow`` names but the lab's settings.yaml does not define (MADSci fails that workflow
    without them too). Returns plate name -> resource id."""
    for name, position in (("location_1", [1, 1, 1]), ("location_2", [2, 2, 2])):
        r = await http.post(
            "/location",
            json={
                "location_name": name,
                "representations": {"robotarm_1": {"position": position}},
                "resource_template_name": "location_container",
            },
        )
        assert r.status_code == 200, r.text
    plates = {}
    for plate, where in (
        ("plate_rack", "storage_rack"),
        ("plate_1", "liquidhandler_1.deck_1"),
        ("plate_2", "location_1"),
    ):
        r = await http.post("/resource", params={"parent": where}, json={"resource_name": plate})
        assert r.status_code == 200, r.text
        plates[plate] = next(x["resource_id"] for x in r.json() if x["resource_name"] == plate)
    return plates


async def where_is(http: httpx.AsyncClient, plate_id: str) -> str | None:
    for loc in (await http.get("/locations")).json():
        tree = (await http.get(f"/location/{loc['location_name']}")).json().get("resource") or {}
        if any(child.get("resource_id") == plate_id for child in _children(tree)):
            return str(loc["location_name"])
    return None


def _children(tree: dict[str, Any]) -> list[dict[str, Any]]:
    kids = tree.get("children") or []
    return list(kids.values()) if isinstance(kids, dict) else list(kids)


async def test_the_example_lab_runs_every_workflow_through_madsci_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.peervenv import peer_python

    python = await asyncio.to_thread(peer_python, "madsci-wc", MADSCI_WC)
    # Given the example lab's twins (actions in short clock time) and the lab's own settings.yaml, with
    # the node URLs in WORKCELL_NODES as a MADSci lab would override them.
    nodes = make_example_lab_nodes(default_duration_s=0.02, work_dir=tmp_path / "nodes")
    async with serve_sim_nodes(nodes) as urls:
        monkeypatch.setenv("WORKCELL_NODES", json.dumps(urls))
        engine = build_engine(
            settings_file=LAB / "settings.yaml", data_dir=tmp_path / "data", store_url="memory://"
        )
        assert engine.workcell.name == "Example Workcell" and engine.workcell.nodes == urls
        async with serve_workcell(engine) as url, httpx.AsyncClient(base_url=url) as http:
            plates = await set_up_the_lab(http)
            protocol = tmp_path / "protocol.txt"
            protocol.write_text("aspirate 100 ul\ndispense 100 ul\n")
            inputs = {
                "example_workflow.workflow.yaml": {"file_inputs": {"liquidhandler_protocol": str(protocol)}},
                "test_feedforward_data.workflow.yaml": {
                    "json_inputs": {"test_command_1": "mix red and blue"},
                    "file_inputs": {"test_file_2": str(protocol)},
                },
                "transfer_resource.workflow.yaml": {
                    "json_inputs": {"resource_id": plates["plate_1"], "target": "liquidhandler_2.deck_3"}
                },
            }
            env = {**os.environ, "DATA_SERVER_URL": url + "/", "MADSCI_DISABLE_RICH_TRACEBACKS": "true"}
            env.pop("VIRTUAL_ENV", None)
            # When MADSci's WorkcellClient submits each workflow file and waits for it.
            proc = await asyncio.create_subprocess_exec(
                str(python),
                str(HERE / "madsci_example_lab.py"),
                url + "/",
                str(LAB / "workflows"),
                json.dumps(inputs),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=tmp_path,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 120)
            assert proc.returncode == 0, err.decode()[-3000:]
            seen = json.loads(out.decode().strip().splitlines()[-1])
            places = {name: await where_is(http, rid) for name, rid in plates.items()}

    # Then every workflow completed, every step succeeded ...
    assert sorted(seen) == sorted(p.name for p in (LAB / "workflows").glob("*.workflow.yaml"))
    for name, wf in seen.items():
        assert wf["completed"], (name, wf)
        assert all(s["status"] == "succeeded" for s in wf["steps"]), (name, wf["steps"])

    def step(workflow: str, name: str) -> dict[str, Any]:
        return next(s for s in seen[workflow]["steps"] if s["name"] == name)

    # ... with the results MADSci's example nodes give, as datapoints.
    admin = seen["admin_commands_test.workflow.yaml"]["steps"]
    assert [s["node"] for s in admin] == [
        "liquidhandler_2",
        "advanced_example_node",
        "liquidhandler_1",
        "advanced_example_node",
    ]
    assert admin[0]["datapoints"] == {"json_result": "Admin Cancel Test"}
    example = "example_workflow.workflow.yaml"
    assert step(example, "Run Liquid Handler Protocol")["datapoints"] == {
        "json_result": {"protocol_name": "protocol.txt"}
    }
    assert step(example, "Run Plate Reader Protocol")["datapoints"]["file"].startswith("well,absorbance")
    ff = "test_feedforward_data.workflow.yaml"
    assert step(ff, "Generate File")["datapoints"]["file"].startswith("well,absorbance")
    # The plate reader's file, fed forward, is the next step's protocol.
    assert step(ff, "Read File")["datapoints"]["json_result"]["protocol_name"].endswith(".csv")
    assert step(ff, "Run Command 1")["datapoints"] == {"json_result": "mix red and blue"}
    assert step(ff, "Run Command 1")["node"] == "liquidhandler_1"
    # Transfers were planned over the lab's transfer capabilities: storage_rack -> deck_2 needs the arm to
    # a deck it reaches, then the liquid handler's own deck_transfer.
    hops = [(s["node"], s["action"]) for s in seen["multistep_transfer.workflow.yaml"]["steps"]]
    assert ("robotarm_1", "transfer") in hops and ("liquidhandler_1", "deck_transfer") in hops
    assert [(s["node"], s["action"]) for s in seen["simple_transfer.workflow.yaml"]["steps"]] == [
        ("robotarm_1", "transfer")
    ]
    # And the plates are where the workflows put them.
    assert places == {
        "plate_rack": "storage_rack",
        "plate_1": "liquidhandler_2.deck_3",
        "plate_2": "location_2",
    }
