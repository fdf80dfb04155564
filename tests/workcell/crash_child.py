"""Child process for test_crash_kill: a workcell on a SQLite file, driving nodes the parent serves, until it is
SIGKILLed.

Usage: python crash_child.py DB_PATH DATA_DIR NODE_URLS_JSON — starts the workcell, submits :func:`workflow`,
prints ``SUBMITTED <workflow_id>`` and keeps running (the parent kills it while a step is in flight).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from podium.store.sqlite import SQLiteStore
from podium.workcell import (
    WorkcellDefinition,
    WorkcellEngine,
    WorkcellManagerSettings,
    WorkflowDefinition,
    load_workflow_definition,
)

STEPS: list[tuple[str, str]] = [
    ("robotarm_1", "home"),
    ("liquidhandler_1", "refill_tips"),
    ("platereader_1", "read_plate"),
    ("sealer_1", "seal"),
]
"""(node, action) per step; the parent holds ``read_plate`` on its node while the child is killed."""


def workflow() -> WorkflowDefinition:
    return load_workflow_definition(
        {"name": "crash", "steps": [{"node": node, "action": action} for node, action in STEPS]}
    )


def settings() -> WorkcellManagerSettings:
    # A short owner lock (and step task lease): the next process takes over ~1 s after the kill.
    return WorkcellManagerSettings(
        owner_lock_ttl_s=1.0, scheduler_update_interval=30.0, node_update_interval=30.0
    )


def engine(db: Path, data_dir: Path, urls: dict[str, str]) -> WorkcellEngine:
    workcell = WorkcellDefinition.model_validate({"name": "crash_cell", "nodes": urls})
    return WorkcellEngine(
        workcell, store=SQLiteStore(db), data_dir=data_dir, settings=settings(), own_store=True
    )


async def main(db: str, data_dir: str, urls_json: str) -> None:
    urls: dict[str, Any] = json.loads(urls_json)
    eng = engine(Path(db), Path(data_dir), urls)
    await eng.start()
    run = await eng.submit(workflow())
    print(f"SUBMITTED {run.workflow_id}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
