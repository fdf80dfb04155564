"""Run the simulated workcell nodes on loopback ports and take a plate through them.

Run: ``python examples/nodes/sim_workcell.py`` (``--serve`` keeps the nodes up and prints their URLs,
for pointing a workcell file at them). Durations are shortened with ``speed``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import threading

from podium.nodes import LocationArgument, NodeClient, send_admin_command_all
from podium.nodes.sim import make_sim_nodes, run_sim_nodes


def loc(name: str, representation: object) -> LocationArgument:
    return LocationArgument(representation=representation, location_name=name)


async def take_a_plate_through(urls: dict[str, str], out_dir: str) -> None:
    clients = {name: NodeClient(url) for name, url in urls.items()}
    try:
        arm, sealer, reader = clients["robotarm_1"], clients["sealer_1"], clients["platereader_1"]
        steps = [
            (arm, "transfer", {"source": loc("stack", [0, 0]), "target": loc("sealer.nest", [1, 0])}),
            (sealer, "seal", {"temperature_c": 165}),
            (arm, "transfer", {"source": loc("sealer.nest", [1, 0]), "target": loc("reader.tray", [2, 0])}),
            (reader, "read_plate", {"wavelength_nm": 450, "plate": loc("reader.tray", "tray_1")}),
        ]
        for client, action_name, args in steps:
            out = await client.run_action(action_name, args, download_dir=out_dir)
            files = {k: p.name for k, p in out.files.items()}
            print(f"{action_name:<11} {out.status.value:<9} {out.json_result} {files or ''}")
        answers = await send_admin_command_all(clients, "lock")
        print("locked:", sorted(name for name, a in answers.items() if getattr(a, "success", False)))
    finally:
        for client in clients.values():
            await client.aclose()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        nodes = make_sim_nodes(speed=1000, seed=42, work_dir=tmp)
        with run_sim_nodes(nodes) as cluster:
            for name, url in cluster.urls.items():
                print(f"{name:<16} {url}")
            if "--serve" in sys.argv:
                threading.Event().wait()  # serve until interrupted
            asyncio.run(take_a_plate_through(cluster.urls, tmp))


if __name__ == "__main__":
    main()
