"""MADSci's own WorkcellClient (0.8.1, in its own venv) submits a workflow to a token-protected podium
workcell (token in the URL's userinfo, nodes behind their own token) and reads its result."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import httpx
import pytest
from bench.peervenv import MADSCI_WORKCELL

from podium.store import MemoryStore
from podium.tokens import new_token, url_with_token
from podium.workcell import WorkcellEngine, WorkcellManagerSettings, load_workcell
from podium.workcell.demo import DEMO_DIR
from podium.workcell.server import serve_workcell

pytestmark = pytest.mark.interop
HERE = Path(__file__).resolve().parent
MADSCI_WC = MADSCI_WORKCELL
PEER_VENVS = [("madsci-wc", MADSCI_WC)]  # built before the tests run (tests/conftest.py)


async def test_madsci_workcell_client_against_podium(tmp_path: Path) -> None:
    from bench.peervenv import peer_python

    from podium.nodes.sim import make_sim_nodes
    from podium.workcell.demo import serve_sim_nodes

    python = await asyncio.to_thread(peer_python, "madsci-wc", MADSCI_WC)
    node_token = new_token()
    nodes = make_sim_nodes(default_duration_s=0.0, work_dir=tmp_path / "n", api_token=node_token)
    async with serve_sim_nodes(nodes) as urls:
        workcell = load_workcell(DEMO_DIR / "workcell.yaml")
        workcell.nodes = {name: url_with_token(url, node_token) for name, url in urls.items()}
        settings = WorkcellManagerSettings(
            data_dir=tmp_path, scheduler_update_interval=5, node_update_interval=2
        )
        engine = WorkcellEngine(workcell, store=MemoryStore(), data_dir=tmp_path, settings=settings)
        async with serve_workcell(engine) as url:
            # Unmodified MADSci client, token-protected podium: the token rides in the URL's userinfo
            # (http://podium:<token>@127.0.0.1:PORT), which MADSci's httpx session sends as Basic auth.
            assert "@" in url and url.startswith("http://podium:")
            async with httpx.AsyncClient() as http:
                assert (await http.get("http://" + url.split("@", 1)[1] + "/state")).status_code == 401
            env = {**os.environ, "DATA_SERVER_URL": url + "/", "MADSCI_DISABLE_RICH_TRACEBACKS": "true"}
            env.pop("VIRTUAL_ENV", None)
            proc = await asyncio.create_subprocess_exec(
                str(python),
                str(HERE / "madsci_wc_client.py"),
                url + "/",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=tmp_path,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 50)
    assert proc.returncode == 0, err.decode()[-3000:]
    seen = json.loads(out.decode().strip().splitlines()[-1])
    assert seen["nodes"] == sorted(urls) and seen["state_nodes"] == sorted(urls)
    assert seen["arm_ready"] is True and "home" in seen["arm_actions"]
    assert seen["completed"] is True and seen["step_status"] == ["succeeded", "succeeded"]
    assert seen["datapoint_labels"] == ["file", "json_result"]
    assert seen["summary_wells"] == 96
    # Retried from step 1: step 0 kept its one run, step 1 ran again; resubmitted: a new run, completed.
    assert seen["retried"] == [True, True, 1, 2] and seen["resubmitted"] == [True, True]
    assert seen["queried_index"] == 1 and seen["archived"] is True
    assert seen["bad_status"] == 422
