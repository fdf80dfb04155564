"""The workcell demo: simulated instruments, a workcell on SQLite, one plate assay run end to end.

Starts the four simulated nodes on loopback ports, serves the workcell manager on SQLite in ``data_dir``,
and submits ``plate_assay.workflow.yaml`` through the ``WorkcellClient`` with a progress bar: the robot
arm moves the plate, the liquid handler adds reagent, the sealer seals it, the reader reads it, and the
reading is saved as datapoints (a JSON summary and the CSV file).

This is what ``podium demo`` (and so ``make demo``) runs; ``python -m podium.workcell.demo [data_dir]`` too.
The workcell and workflow files beside this module are the demo's own (:data:`DEMO_DIR`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from podium.client.workcell import WorkcellClient
from podium.nodes import RestNode
from podium.nodes.sim import make_sim_nodes
from podium.store.migrate import current_version, head_version, upgrade
from podium.store.sqlite import SQLiteStore
from podium.tokens import new_token, split_url_token, url_with_token
from podium.workcell import WorkcellEngine, WorkcellManagerSettings, load_workcell
from podium.workcell.resources import Resource, ResourceTable
from podium.workcell.server import serve_asgi, serve_workcell

DEMO_DIR = Path(__file__).resolve().parent
"""The folder holding ``workcell.yaml`` and ``plate_assay.workflow.yaml``."""

__all__ = ["DEMO_DIR", "main", "report", "run_demo", "serve_sim_nodes"]


async def run_demo(
    data_dir: str | Path, *, show_progress: bool = True, action_s: float = 0.2, stay_open: bool = False
) -> dict[str, Any]:
    """Run the plate assay; return what happened (workflow id and state, the reading, where the plate is).
    It prints the dashboard's address while it runs; ``stay_open`` keeps serving it after the run until the
    process is interrupted."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    db = data_dir / "podium.db"
    if current_version(db) not in (None, head_version()):
        upgrade(db)  # the demo's own folder, left by an earlier podium: brought to this one's schema
    # One token per demo run for the nodes (the workcell passes it in each node URL's userinfo) and one
    # for the workcell API (serve_workcell makes it and hands it over in the URL it yields).
    node_token = new_token()
    nodes = make_sim_nodes(default_duration_s=action_s, work_dir=data_dir / "nodes", api_token=node_token)
    async with serve_sim_nodes(nodes) as urls:
        workcell = load_workcell(DEMO_DIR / "workcell.yaml")
        workcell.nodes = {name: url_with_token(url, node_token) for name, url in urls.items()}
        settings = WorkcellManagerSettings(data_dir=data_dir, **workcell.settings)
        engine = WorkcellEngine(
            workcell,
            store=SQLiteStore(db),
            data_dir=data_dir,
            settings=settings,
            own_store=True,
        )
        async with serve_workcell(engine) as url:
            # An earlier demo run left the plate at the reader (or, interrupted, a run in the queue): start
            # from the lab workcell.yaml describes.
            for earlier in engine.active_workflows():
                await engine.cancel(earlier.workflow_id)
            await engine.change_resources(_reset_lab)
            bare, token = split_url_token(url)
            print(f"dashboard: {bare}/dashboard (sign in with the token {token})", file=sys.stderr)
            with WorkcellClient(url) as client:
                wf = await asyncio.to_thread(
                    client.submit_workflow,
                    DEMO_DIR / "plate_assay.workflow.yaml",
                    {"volume_ul": 50, "wavelength_nm": 600},
                    show_progress=show_progress,
                )
                summary = await asyncio.to_thread(wf.get_datapoint, "read", "summary")
                csv_id = wf.get_datapoint_id("read", "absorbance_csv")
                csv = await asyncio.to_thread(client.get_datapoint_value, csv_id)
            plate = engine.resources.find("assay_plate")
            where = next(
                (
                    loc.location_name
                    for loc in engine.locations.values()
                    if plate and loc.resource_id == plate.parent_id
                ),
                None,
            )
            reagent = engine.resources.find("reagent")
            if stay_open:
                print(f"serving the dashboard at {bare}/dashboard until Ctrl-C", file=sys.stderr)
                await asyncio.Event().wait()
    result = {
        "workflow_id": wf.workflow_id,
        "state": wf.state.value,
        "steps": [(s.label, s.status.value) for s in wf.steps],
        "reading": summary.value,
        "reading_datapoint": summary.datapoint_id,
        "csv_datapoint": csv_id,
        "csv_rows": len(csv.decode().strip().splitlines()) - 1 if isinstance(csv, bytes) else None,
        "plate_location": where,
        "plate_sealed": bool(plate and plate.attributes.get("sealed")),
        "reagent_left_ul": reagent.quantity if reagent else None,
        "duration_s": wf.duration_seconds,
    }
    return result


def _reset_lab(table: ResourceTable) -> list[Resource]:
    """The lab as workcell.yaml sets it up: the plate back on its stack, unsealed, and the reagent back to
    5,000 uL (what the plate assay starts from; the resources persist in the store between runs)."""
    changed: list[Resource] = []
    plate, stack, reagent = table.find("assay_plate"), table.find("plate_stack"), table.find("reagent")
    if plate is not None and stack is not None and plate.parent_id not in (None, stack.resource_id):
        changed += table.move(plate.parent_id, stack.resource_id)
    if plate is not None and plate.attributes.get("sealed"):
        changed += table.set_attribute(plate.resource_id, "sealed", False)
    if reagent is not None and reagent.quantity is not None and reagent.quantity != 5000:
        changed += table.change_quantity(reagent.resource_id, 5000 - reagent.quantity)
    return changed


@contextlib.asynccontextmanager
async def serve_sim_nodes(nodes: Mapping[str, RestNode]) -> AsyncIterator[dict[str, str]]:
    """Serve each node's app on a free loopback port (TCP_NODELAY sockets); yield name -> URL."""
    async with contextlib.AsyncExitStack() as stack:
        urls = {}
        for name, node in nodes.items():
            urls[name] = await stack.enter_async_context(serve_asgi(node.create_app()))
            node.info.node_url = urls[name]
        yield urls


def report(result: Mapping[str, Any], data_dir: Path) -> None:
    """Print what the demo did, for people."""
    print(f"workflow {result['workflow_id']}: {result['state']} in {result['duration_s']:.2f} s")
    print(
        f"plate is at {result['plate_location']} (sealed: {result['plate_sealed']}); "
        f"reagent left {result['reagent_left_ul']} uL"
    )
    print(f"reading (datapoint {result['reading_datapoint']}): {result['reading']}")
    print(
        f"CSV with {result['csv_rows']} wells saved as datapoint {result['csv_datapoint']} under {data_dir}"
    )


def main() -> None:
    data_dir = (
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="podium-workcell-demo-"))
    )
    report(asyncio.run(run_demo(data_dir)), data_dir)


if __name__ == "__main__":
    main()
