"""The REST API over real HTTP with simulated nodes, podium's WorkcellClient, and the demo."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from podium.client.workcell import WorkcellClient, WorkflowFailedError
from podium.nodes import serve_nodes
from podium.nodes.sim import make_sim_nodes
from podium.store import MemoryStore
from podium.workcell import WorkcellEngine, WorkcellManagerSettings, load_workcell
from podium.workcell.demo import DEMO_DIR
from podium.workcell.server import create_app, serve_workcell


async def test_demo_runs_the_plate_assay(tmp_path: Path) -> None:
    from podium.workcell.demo import run_demo

    result = await run_demo(tmp_path, show_progress=False, action_s=0.0)
    assert result["state"] == "completed"
    assert all(status == "succeeded" for _, status in result["steps"])
    assert result["plate_location"] == "reader_tray" and result["plate_sealed"] is True
    assert result["reagent_left_ul"] == 4950.0
    assert result["reading"]["n_wells"] == 96 and result["csv_rows"] == 96
    assert (tmp_path / "podium.db").exists()


async def test_rest_api_with_sim_nodes_and_client(tmp_path: Path) -> None:
    nodes = make_sim_nodes(default_duration_s=0.0, work_dir=tmp_path / "nodes")
    async with serve_nodes(nodes) as urls:
        workcell = load_workcell(DEMO_DIR / "workcell.yaml")
        workcell.nodes = dict(urls)
        settings = WorkcellManagerSettings(
            data_dir=tmp_path, scheduler_update_interval=30, node_update_interval=30
        )
        engine = WorkcellEngine(workcell, store=MemoryStore(), data_dir=tmp_path, settings=settings)
        async with serve_workcell(engine) as url, httpx.AsyncClient(base_url=url) as http:
            # Validation: a 4xx naming the step, and nothing queued.
            bad = {"name": "bad", "steps": [{"name": "Fly", "node": "robotarm_1", "action": "fly"}]}
            def_id = (await http.post("/workflow_definition", json=bad)).json()
            r = await http.post("/workflow", data={"workflow_definition_id": def_id})
            assert r.status_code == 422 and "step 'Fly'" in r.json()["detail"] and r.json()["step"] == "Fly"
            assert (await http.get("/workflows/active")).json() == {}
            missing = {
                "name": "p",
                "parameters": [{"name": "v"}],
                "steps": [{"node": "liquidhandler_1", "action": "aspirate", "args": {"volume_ul": "$v"}}],
            }
            def_id = (await http.post("/workflow_definition", json=missing)).json()
            r = await http.post("/workflow", data={"workflow_definition_id": def_id})
            assert r.status_code == 422 and "'v'" in r.json()["detail"]
            assert (await http.get("/workflow/01ARZ3NDEKTSV4RRFFQ69G5FAV")).status_code == 404
            nodes_doc = (await http.get("/nodes")).json()
            assert nodes_doc["platereader_1"]["info"]["actions"]["read_plate"]["name"] == "read_plate"
            assert nodes_doc["robotarm_1"]["status"]["ready"] is True
            state = (await http.get("/state")).json()
            assert state["workcell_info"]["name"] == "demo_workcell"
            # The client: submit, wait (long-poll), read datapoints; a file input travels with the run.
            client = WorkcellClient(url)
            protocol = tmp_path / "proto.txt"
            protocol.write_text("aspirate 10\ndispense 10\n")
            wf_def = {
                "name": "proto",
                "parameters": {"file_inputs": [{"key": "protocol"}]},
                "steps": [
                    {
                        "name": "run",
                        "key": "run",
                        "node": "liquidhandler_1",
                        "action": "run_protocol",
                        "files": {"protocol": "protocol"},
                    }
                ],
            }
            wf = await asyncio.to_thread(
                client.submit_workflow, wf_def, None, {"protocol": protocol}, show_progress=False
            )
            assert wf.status.completed
            dp = await asyncio.to_thread(wf.get_datapoint, "run")
            assert dp.value["steps"] == 2
            assert wf.file_input_ids["protocol"]
            # A failing step raises with raise_on_failed, then retry works from that step.
            failing = {"name": "f", "steps": [{"name": "peel", "node": "sealer_1", "action": "peel"}]}
            with pytest.raises(WorkflowFailedError, match="not sealed"):
                await asyncio.to_thread(client.submit_workflow, failing, show_progress=False)
            failed = (await asyncio.to_thread(client.get_archived_workflows, 1)).popitem()[1]
            assert failed.status.failed
            seal_first = {"name": "s", "steps": [{"node": "sealer_1", "action": "seal"}]}
            await asyncio.to_thread(client.submit_workflow, seal_first, show_progress=False)
            retried = await asyncio.to_thread(client.retry_workflow, failed.workflow_id, show_progress=False)
            assert retried.status.completed and len(retried.steps[0].history) == 2
            assert await asyncio.to_thread(client.ping_nodes) == {n: True for n in urls}
            assert set(await asyncio.to_thread(client.list_nodes)) == set(urls)
            # Locations and resources.
            loc = (await http.get("/location/plate_stack")).json()
            assert loc["resource"]["children"][0]["resource_name"] == "assay_plate"
            assert loc["reference"] == {"robotarm_1": [0, 0, 100]}
            assert (
                await http.post("/resource/reagent/quantity", params={"delta": -20000})
            ).status_code == 422
            client.close()


async def test_openapi_and_asgi(tmp_path: Path) -> None:
    workcell = load_workcell(DEMO_DIR / "workcell.yaml")
    from podium.workcell import InProcessNode

    nodes = {n: InProcessNode(n, {"home": lambda: None}) for n in workcell.nodes}
    engine = WorkcellEngine(workcell, store=MemoryStore(), data_dir=tmp_path, connectors=nodes)
    app = create_app(engine, manage_engine=False, api_tokens=["t0k"])
    await engine.start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://wc", headers={"X-Client-Token": "t0k"}
        ) as http:
            paths = (await http.get("/openapi.json")).json()["paths"]
            for route in [
                "/workcell",
                "/state",
                "/nodes",
                "/node/{node_name}",
                "/workflows/active",
                "/workflows/archived",
                "/workflows/queue",
                "/workflow/{workflow_id}",
                "/workflow/{workflow_id}/retry",
                "/workflow_definition",
                "/workflow",
                "/datapoint/{datapoint_id}",
                "/datapoint/{datapoint_id}/value",
                "/admin/{command}/{node}",
            ]:
                assert route in paths, route
            # A field of the wrong shape is refused, naming it ...
            r = await http.post(
                "/workflow_definition",
                json={"name": "x", "steps": [{"node": "robotarm_1", "action": "home", "args": [1]}]},
            )
            assert r.status_code == 422 and "args" in r.json()["detail"]
            # ... while a field podium does not know is kept, as MADSci 0.8.1 accepts it (`comment:` in
            # MADSci's example lab).
            r = await http.post(
                "/workflow_definition",
                json={"name": "x", "steps": [{"node": "robotarm_1", "action": "home", "comment": "hi"}]},
            )
            assert r.status_code == 200
            stored = (await http.get(f"/workflow_definition/{r.json()}")).json()
            assert stored["steps"][0]["comment"] == "hi"
    finally:
        await engine.stop()
