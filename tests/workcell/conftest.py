"""Fixtures for the workcell tests: a small workcell of in-process nodes on the memory store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from podium.clock import system_clock
from podium.store import MemoryStore, Store, open_store
from podium.testing import WorkcellHarness
from podium.workcell import InProcessNode, WorkcellDefinition, WorkcellEngine, WorkcellManagerSettings

WORKCELL: dict[str, Any] = {
    "name": "test_cell",
    "nodes": {"arm": "inprocess://arm", "lh": "inprocess://lh", "reader": "inprocess://reader"},
    "locations": [
        {
            "location_name": "stack",
            "representations": {"arm": [0, 0, 0]},
            "resource_definition": {"resource_name": "plate_stack", "base_type": "stack", "capacity": 10},
        },
        {
            "location_name": "deck",
            "representations": {"arm": [1, 0, 0], "lh": "deck_1"},
            "resource_definition": {"resource_name": "deck_slot", "base_type": "slot"},
        },
        {
            "location_name": "reader_tray",
            "representations": {"arm": [2, 0, 0], "reader": "tray"},
            "resource_definition": {"resource_name": "reader_slot", "base_type": "slot"},
        },
    ],
    "resources": [
        {"resource_name": "tips", "base_type": "discrete_consumable", "quantity": 10, "capacity": 96},
    ],
}


def make_nodes() -> dict[str, InProcessNode]:
    def transfer(source: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
        return {"from": source["location_name"], "to": target["location_name"]}

    def aspirate(volume_ul: float, well: str = "A1") -> dict[str, Any]:
        return {"volume_ul": volume_ul, "well": well}

    def read(wavelength_nm: int = 600) -> dict[str, Any]:
        return {"mean": 0.5, "wavelength_nm": wavelength_nm}

    def fail() -> None:
        raise RuntimeError("instrument jammed")

    return {
        "arm": InProcessNode("arm", {"transfer": transfer, "noop": lambda: None, "fail": fail}),
        "lh": InProcessNode("lh", {"aspirate": aspirate, "noop": lambda: None}),
        "reader": InProcessNode("reader", {"read": read, "noop": lambda: None}),
    }


@pytest.fixture
def nodes() -> dict[str, InProcessNode]:
    return make_nodes()


@pytest.fixture
def workcell() -> WorkcellDefinition:
    return WorkcellDefinition.model_validate(WORKCELL)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """The workcell's store: memory, or the real Redis under a key prefix of the test's own (deleted after;
    skipped locally, a failure in CI, when Redis is missing)."""
    if request.param == "memory":
        yield MemoryStore()
        return
    from tests.conformance.redis_support import redis_prefix

    async with redis_prefix(request.getfixturevalue("redis_url")) as url:
        redis_store = open_store(url)
        try:
            yield redis_store
        finally:
            await redis_store.close()


@pytest.fixture
async def engine(
    workcell: WorkcellDefinition, nodes: dict[str, InProcessNode], tmp_path: Path, store: Store
) -> AsyncIterator[WorkcellEngine]:
    settings = WorkcellManagerSettings(scheduler_update_interval=30.0, node_update_interval=30.0)
    harness = WorkcellHarness(
        workcell, nodes=nodes, store=store, clock=system_clock, data_dir=tmp_path, settings=settings
    )
    async with harness:
        yield harness.workcell
