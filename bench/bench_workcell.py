"""Workcell benchmark: podium's workcell manager on SQLite driving simulated nodes over HTTP.

Figures:
- a 10-step workflow of no-op actions: submit-to-completed time and per-step overhead, where the overhead
  is the time per step minus the node's own round trip for one action (``NodeClient.run_action`` against
  the same node in the same run);
- 100 queued 3-step workflows over 3 nodes: makespan.

MADSci's workcell manager (0.8.1) is not run here yet: it needs a Redis-compatible cache, a MongoDB-like
document store and separate data and location manager servers; the side-by-side run is listed as missing
in the JSON line (``madsci: null``) rather than estimated.

Run: ``python bench/bench_workcell.py`` (prints a table, then one JSON line).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from podium.nodes import NodeClient, RestNode  # noqa: E402
from podium.nodes.sim import make_sim_nodes  # noqa: E402
from podium.store.sqlite import SQLiteStore  # noqa: E402
from podium.workcell import (  # noqa: E402
    WorkcellDefinition,
    WorkcellEngine,
    WorkcellManagerSettings,
    load_workflow_definition,
)
from podium.workcell.server import serve_asgi  # noqa: E402

NODES = ("robotarm_1", "liquidhandler_1", "platereader_1")
ACTIONS = {"robotarm_1": "home", "liquidhandler_1": "refill_tips", "platereader_1": "read_plate"}


@contextlib.asynccontextmanager
async def sim_nodes(work_dir: Path) -> AsyncIterator[tuple[dict[str, RestNode], dict[str, str]]]:
    nodes = {k: v for k, v in make_sim_nodes(default_duration_s=0.0, work_dir=work_dir).items() if k in NODES}
    async with contextlib.AsyncExitStack() as stack:
        urls = {}
        for name, node in nodes.items():
            urls[name] = await stack.enter_async_context(serve_asgi(node.create_app()))
            node.info.node_url = urls[name]
        yield nodes, urls


async def node_round_trip(url: str, n: int = 30) -> float:
    async with NodeClient(url) as client:
        await client.run_action("home", {})
        t = time.perf_counter()
        for _ in range(n):
            await client.run_action("home", {}, refresh_status=True)
        return (time.perf_counter() - t) / n


async def run_podium(tmp: Path) -> dict[str, Any]:
    async with sim_nodes(tmp / "nodes") as (_nodes, urls):
        rtt = await node_round_trip(urls["robotarm_1"])
        workcell = WorkcellDefinition(name="bench", nodes=urls)
        settings = WorkcellManagerSettings(
            scheduler_update_interval=5.0, node_update_interval=2.0, data_dir=tmp
        )
        engine = WorkcellEngine(
            workcell, store=SQLiteStore(tmp / "bench.db"), data_dir=tmp, settings=settings, own_store=True
        )
        ten = load_workflow_definition(
            {
                "name": "ten",
                "steps": [{"name": f"s{i}", "node": "robotarm_1", "action": "home"} for i in range(10)],
            }
        )
        async with engine:
            times = []
            for _ in range(6):
                t = time.perf_counter()
                wf = await engine.submit(ten)
                wf = await engine.wait_for(wf.workflow_id, timeout_s=60)
                assert wf.status.completed, wf.status.description
                times.append(time.perf_counter() - t)
            ten_s = statistics.median(times[1:])
            # 100 queued workflows, 3 steps each over 3 nodes (rotated so all nodes work at once).
            defs = []
            for i in range(3):
                order = NODES[i:] + NODES[:i]
                steps = [{"node": n, "action": ACTIONS[n]} for n in order]
                defs.append(load_workflow_definition({"name": f"w{i}", "steps": steps}))
            await engine.poll_nodes(update_info=True)
            t = time.perf_counter()
            runs = [await engine.submit(defs[i % 3]) for i in range(100)]
            results = [await engine.wait_for(r.workflow_id, timeout_s=120) for r in runs]
            makespan = time.perf_counter() - t
            ok = sum(1 for r in results if r.status.completed)
    per_step = ten_s / 10
    return {
        "node_round_trip_ms": rtt * 1000,
        "ten_step_submit_to_completed_ms": ten_s * 1000,
        "per_step_ms": per_step * 1000,
        "per_step_overhead_ms": (per_step - rtt) * 1000,
        "makespan_100x3_s": makespan,
        "makespan_completed": ok,
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        podium = asyncio.run(run_podium(Path(tmp)))
    rows = [
        ("node round trip (one no-op action)", f"{podium['node_round_trip_ms']:.2f} ms"),
        ("10-step workflow, submit to completed", f"{podium['ten_step_submit_to_completed_ms']:.1f} ms"),
        ("per step", f"{podium['per_step_ms']:.2f} ms"),
        ("per-step overhead (minus node round trip)", f"{podium['per_step_overhead_ms']:.2f} ms"),
        (
            "100 queued 3-step workflows over 3 nodes, makespan",
            f"{podium['makespan_100x3_s']:.2f} s ({podium['makespan_completed']}/100 completed)",
        ),
        ("MADSci workcell manager 0.8.1", "not run: needs Redis + document DB + data/location managers"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'podium workcell (sqlite, sim nodes over HTTP)':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(
        json.dumps(
            {
                "bench": "workcell",
                "podium": podium,
                "madsci": None,
                "madsci_note": "not run: MADSci's manager needs a Redis-compatible cache, a document store and data/location manager servers",
            }
        )
    )


if __name__ == "__main__":
    main()
