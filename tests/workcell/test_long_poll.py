"""The workflow long-poll: ``GET /workflow/{id}?wait_s=`` answers at a change, ``&until=terminal`` only at
the end; the client waits from its submission's answer and asks for the end when it shows no progress."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from podium.store import MemoryStore
from podium.workcell import (
    InProcessNode,
    WorkcellDefinition,
    WorkcellEngine,
    WorkcellManagerSettings,
    load_workflow_definition,
)
from podium.workcell.server import serve_workcell


def _engine(tmp_path: Path, node: InProcessNode) -> WorkcellEngine:
    settings = WorkcellManagerSettings(scheduler_update_interval=30.0, node_update_interval=30.0)
    return WorkcellEngine(
        WorkcellDefinition(name="lp", nodes={"arm": node.url}),
        store=MemoryStore(),
        data_dir=tmp_path,
        settings=settings,
        connectors={"arm": node},
    )


async def test_until_terminal_answers_only_at_the_end(tmp_path: Path) -> None:
    node = InProcessNode("arm", {"noop": lambda: None})
    node.gate = asyncio.Event()
    engine = _engine(tmp_path, node)
    steps: list[dict[str, Any]] = [{"name": f"s{i}", "node": "arm", "action": "noop"} for i in range(3)]
    await engine.start()
    run = await engine.submit(load_workflow_definition({"name": "w", "steps": steps}))
    async with serve_workcell(engine) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        path = f"/workflow/{run.workflow_id}"
        await asyncio.wait_for(node.acknowledged.wait(), 5)
        # Nothing ends while the node holds step 0: the long-poll answers when its wait is over.
        held = (await http.get(path, params={"wait_s": 0.2, "until": "terminal"})).json()
        assert held["status"]["running"] is True and held["status"]["completed"] is False
        # Then three steps end (six changes); the answer is the completed run.
        ended = asyncio.create_task(http.get(path, params={"wait_s": 5, "until": "terminal"}))
        node.gate.set()
        last = (await asyncio.wait_for(ended, 5)).json()
        assert last["status"]["completed"] is True
        assert [s["status"] for s in last["steps"]] == ["succeeded"] * 3
        # An unknown value is refused, as any bad query parameter.
        assert (await http.get(path, params={"wait_s": 1, "until": "soon"})).status_code == 422
    await engine.stop()
