"""Real sockets: uvicorn in a thread, as a task, and the sim cluster."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from podium.clock import ManualClock
from podium.nodes import NodeClient, NodeServer, serve_node, serve_nodes
from podium.nodes.sim import SealerNode, make_sim_nodes, run_sim_nodes
from podium.testing import drive


async def test_sim_cluster_in_threads(tmp_path: Path) -> None:
    with run_sim_nodes(default_duration_s=0.01, work_dir=tmp_path) as cluster:
        assert set(cluster.urls) == {"liquidhandler_1", "robotarm_1", "platereader_1", "sealer_1"}
        async with NodeClient(cluster.urls["platereader_1"]) as client:
            info = await client.get_info()
            assert info.node_url == cluster.urls["platereader_1"]
            out = await client.run_action("read_plate", download_dir=tmp_path / "dl")
            assert out.ok and out.files["file"].read_text().count("\n") == 97
            assert client.requests_sent <= 7


async def test_shutdown_admin_command_stops_a_threaded_server(tmp_path: Path) -> None:
    server = NodeServer(SealerNode(default_duration_s=0, work_dir=tmp_path))
    server.start()
    stopped = threading.Event()
    async with NodeClient(server.url) as client:
        assert (await client.send_admin_command("shutdown")).success
    # The server thread ends on its own after the command.
    waiter = threading.Thread(target=lambda: (server._thread.join(10), stopped.set()))  # type: ignore[union-attr]
    waiter.start()
    waiter.join(10)
    assert stopped.is_set() and not server.running
    server.stop()


async def test_serve_node_in_the_loop_with_a_manual_clock(tmp_path: Path) -> None:
    clock = ManualClock()
    nodes = make_sim_nodes(clock=clock, work_dir=tmp_path)
    async with serve_nodes(nodes) as urls, NodeClient(urls["robotarm_1"], clock=clock) as client:
        args = {"source": {"representation": 1}, "target": {"representation": 2}}
        out = await drive(clock, client.run_action("transfer", args))
        assert out.ok and clock.monotonic() == 8.0
    async with serve_node(nodes["sealer_1"]) as url, httpx.AsyncClient() as http:
        assert (await http.get(f"{url}/status")).json()["ready"]
