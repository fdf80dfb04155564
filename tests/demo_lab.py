"""The demo workcell on simulated instruments, served on loopback: the CLI's and the dashboard's tests use it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from podium.nodes import serve_nodes
from podium.nodes.sim import make_sim_nodes
from podium.store import MemoryStore
from podium.tokens import split_url_token
from podium.workcell import WorkcellEngine, WorkcellManagerSettings, load_workcell
from podium.workcell.demo import DEMO_DIR
from podium.workcell.server import serve_workcell


@contextlib.asynccontextmanager
async def served_demo_lab(
    tmp_path: Path, *, action_s: float
) -> AsyncIterator[tuple[str, str, dict[str, Any]]]:
    """``(url, token, nodes)`` of the demo workcell whose simulated actions take ``action_s`` seconds."""
    nodes = make_sim_nodes(default_duration_s=action_s, work_dir=tmp_path / "nodes")
    async with serve_nodes(nodes) as urls:
        workcell = load_workcell(DEMO_DIR / "workcell.yaml")
        workcell.nodes = dict(urls)
        settings = WorkcellManagerSettings(
            data_dir=tmp_path / "data", scheduler_update_interval=1.0, node_update_interval=0.2
        )
        engine = WorkcellEngine(workcell, store=MemoryStore(), data_dir=tmp_path / "data", settings=settings)
        async with serve_workcell(engine) as url_with_token:
            url, token = split_url_token(url_with_token)
            assert token is not None
            yield url, token, nodes
