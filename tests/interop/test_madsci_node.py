"""Interop with MADSci 0.8.1's real packages, each side against the other.

1. An unmodified node written with ``madsci.node_module`` (``madsci_node_app.py``, run by the peer venv's
   python) is driven by podium's :class:`~podium.nodes.NodeClient`: args, a file in, a file out, a
   location, a failure, admin commands, reconcile.
2. MADSci's own ``RestNodeClient`` (in the peer venv) drives podium's simulated nodes, open and with a
   token given as URL userinfo.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from bench.peervenv import MADSCI_NODE

from podium.ids import new_ulid_str
from podium.nodes import ActionStatus, LocationArgument, NodeClient
from podium.nodes.sim import run_sim_nodes
from podium.tokens import url_with_token

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent
REQUIREMENTS = MADSCI_NODE
PEER_VENVS = [("madsci-node", REQUIREMENTS)]  # built before the tests run (tests/conftest.py)


@pytest.fixture(scope="module")
def madsci_python() -> Path:
    from bench.peervenv import peer_python

    return peer_python("madsci-node", REQUIREMENTS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Wait until the node answers ``/status`` with ``ready`` (its start-up thread has finished)."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=1.0) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"the MADSci node exited with {proc.returncode}")
            try:
                if http.get(f"{url}/status").json().get("ready"):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)  # a process coming up: there is no event to wait on
    raise AssertionError(f"the MADSci node at {url} was not ready within {timeout_s} s")


@pytest.fixture(scope="module")
def madsci_node(madsci_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("madsci-node")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (workdir / "node.log").open("wb")
    proc = subprocess.Popen(
        [str(madsci_python), str(HERE / "madsci_node_app.py"), str(port), str(workdir)],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        _wait_ready(url, proc, timeout_s=45)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


async def test_podium_client_drives_an_unmodified_madsci_node(madsci_node: str, tmp_path: Path) -> None:
    async with NodeClient(madsci_node) as client:
        info = await client.get_info()
        assert info.node_name == "interop_node"
        assert set(info.actions) >= {"add", "count_bytes", "make_report", "move", "broken"}
        assert info.actions["count_bytes"].files["data"].required
        assert info.actions["make_report"].results["file"].result_type == "file"
        assert (await client.get_status()).ready

        # An action with args: podium's id is kept, the node makes its own.
        action_id = new_ulid_str()
        created: list[str] = []
        out = await client.run_action("add", {"a": 2, "b": 3}, action_id=action_id, on_created=created.append)
        assert out.ok and out.json_result == {"sum": 5}
        assert out.action_id == action_id and out.node_action_id == created[0] != action_id
        assert out.node_status is not None and out.node_status.ready

        # A file in.
        payload = tmp_path / "sample.bin"
        payload.write_bytes(b"podium->madsci \x00\x01\x02")
        out = await client.run_action("count_bytes", files={"data": payload})
        assert out.ok and out.json_result == {"n_bytes": 18, "first": "podium->"}

        # A file out, downloaded and byte-checked.
        out = await client.run_action("make_report", {"rows": 4}, download_dir=tmp_path / "dl")
        assert out.ok and out.file_keys == ["file"]
        assert out.files["file"].read_bytes() == b"i,value\n0,0\n1,1\n2,4\n3,9\n"

        # Locations arrive as LocationArgument.
        src = LocationArgument(representation={"x": 1.5}, location_name="deck_1")
        out = await client.run_action("move", {"source": src, "target": {"representation": "B2"}})
        assert out.ok and out.json_result == {"from": {"x": 1.5}, "to": "B2", "names": ["deck_1", None]}

        # Reconcile by the node's id after the fact.
        seen = await client.reconcile(out.node_action_id, action_name="move", action_id="podium-id")
        assert seen.status is ActionStatus.SUCCEEDED and seen.json_result == out.json_result

        # An action the node holds created and never started (acknowledged before a crash) is started by
        # the node's id for it, not created again.
        held = await client.create_action("add", {"a": 4, "b": 5}, action_id=new_ulid_str())
        out = await client.run_action("add", {"a": 4, "b": 5}, created_as=held, on_created=created.append)
        assert out.ok and out.json_result == {"sum": 9} and out.node_action_id == held == created[-1]
        assert (await client.get_action_history(held))[held][-1].status is ActionStatus.SUCCEEDED

        # A failing action reports failed with the node's error; the node is then errored until reset.
        out = await client.run_action("broken", {"reason": "bad lamp"})
        assert out.status is ActionStatus.FAILED and out.error_message == "bad lamp"
        assert out.errors[0].error_type == "RuntimeError"
        assert out.node_status is not None and out.node_status.errored
        refused = await client.run_action("add", {"a": 1})
        assert refused.status is ActionStatus.NOT_READY

        # Admin commands: 0.8.1 nodes implement lock, unlock, reset, shutdown (not pause).
        assert (await client.send_admin_command("reset")).success
        assert (await client.send_admin_command("lock")).success
        assert (await client.get_status()).locked
        assert (await client.send_admin_command("unlock")).success
        assert not (await client.send_admin_command("pause")).success
        assert (await client.get_status()).ready
        assert (await client.get_action_history(created[0]))[created[0]][-1].status is ActionStatus.SUCCEEDED
        assert client.requests_sent < 60  # well inside MADSci's 100 requests a minute


MADSCI_CLIENT_SCRIPT = r"""
import json, sys
from pathlib import Path
from madsci.client.node.rest_node_client import RestNodeClient
from madsci.common.types.action_types import ActionRequest
from madsci.common.types.admin_command_types import AdminCommands
from madsci.common.types.location_types import LocationArgument

urls, protocol = json.loads(sys.argv[1]), sys.argv[2]
out = {}
arm = RestNodeClient(urls["robotarm_1"])
info = arm.get_info()
out["arm"] = {"name": info.node_name, "actions": sorted(info.actions), "ready": arm.get_status().ready,
              "locations": sorted(info.actions["transfer"].locations)}
r = arm.send_action(ActionRequest(action_name="transfer", args={
    "source": LocationArgument(representation="a", location_name="A"),
    "target": LocationArgument(representation="b", location_name="B")}))
out["transfer"] = [r.status.value, r.json_result]
reader = RestNodeClient(urls["platereader_1"])
r = reader.send_action(ActionRequest(action_name="read_plate", args={"wavelength_nm": 450}))
out["read"] = [r.status.value, r.json_result["n_wells"], Path(r.files).read_text().splitlines()[:2]]
lh = RestNodeClient(urls["liquidhandler_1"])
r = lh.send_action(ActionRequest(action_name="run_protocol", args={"repeats": 1}, files={"protocol": protocol}))
out["protocol"] = [r.status.value, r.json_result]
sealer = RestNodeClient(urls["sealer_1"])
r = sealer.send_action(ActionRequest(action_name="seal", args={}))
full = sealer.get_action_result_by_name("seal", r.action_id)
out["seal"] = [r.status.value, [e.message for e in full.errors]]
out["lock"] = [sealer.send_admin_command(AdminCommands.LOCK).success, sealer.get_status().locked,
               sealer.send_admin_command(AdminCommands.UNLOCK).success, sealer.get_status().ready]
out["history"] = len(arm.get_action_history())
out["log"] = len(arm.get_log()) > 0
print("RESULT " + json.dumps(out))
"""


@pytest.mark.parametrize("token", [None, "sim-node-token"], ids=["open", "token-in-url"])
def test_madsci_rest_node_client_drives_podium_sim_nodes(
    madsci_python: Path, tmp_path: Path, token: str | None
) -> None:
    """Unmodified: with a token, the node URLs carry it as userinfo (http://podium:<token>@host:port),
    which MADSci's httpx session sends as Basic auth."""
    protocol = tmp_path / "protocol.txt"
    protocol.write_text("aspirate 10\ndispense 10\n")
    script = tmp_path / "drive.py"
    script.write_text(MADSCI_CLIENT_SCRIPT)
    with run_sim_nodes(default_duration_s=0.02, work_dir=tmp_path / "nodes", api_token=token) as cluster:
        cluster.nodes["sealer_1"].inject_failure(fail_next=1, message="heater fault")  # type: ignore[attr-defined]
        urls = {name: url_with_token(url, token) for name, url in cluster.urls.items()}
        if token:
            assert httpx.get(f"{cluster.urls['sealer_1']}/status").status_code == 401
        proc = subprocess.run(
            [str(madsci_python), str(script), json.dumps(urls), str(protocol)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line is not None, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    out = json.loads(line[len("RESULT ") :])
    assert out["arm"] == {
        "name": "robotarm_1",
        "actions": ["home", "transfer"],
        "ready": True,
        "locations": ["source", "target"],
    }
    assert out["transfer"] == [
        "succeeded",
        {"source": "a", "target": "b", "source_name": "A", "target_name": "B", "resource_id": None},
    ]
    assert out["read"][:2] == ["succeeded", 96] and out["read"][2][0] == "well,absorbance"
    assert out["protocol"][0] == "succeeded" and out["protocol"][1]["tips_used"] == 1
    assert out["seal"] == ["failed", ["heater fault"]]
    assert out["lock"] == [True, True, True, True]
    assert out["history"] == 1 and out["log"] is True
    assert sys.executable  # the podium side ran in this interpreter
