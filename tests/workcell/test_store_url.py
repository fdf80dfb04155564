"""``podium workcell serve --store-url redis://...``: the workcell's state on Redis."""

from __future__ import annotations

from pathlib import Path

from podium.store.redis import RedisStore
from podium.workcell import LocationDefinition
from podium.workcell.server import build_engine
from tests.conformance.redis_support import redis_prefix


async def test_a_workcell_on_a_redis_store_url_keeps_its_state_there(redis_url: str, tmp_path: Path) -> None:
    async with redis_prefix(redis_url) as url:
        engine = build_engine(store_url=url, data_dir=tmp_path, manager_name="cell_on_redis")
        assert isinstance(engine.store, RedisStore)
        async with engine:
            await engine.add_location(LocationDefinition(location_name="bench"))
        again = build_engine(store_url=url, data_dir=tmp_path, manager_name="cell_on_redis")
        async with again:
            assert again.get_location("bench").location_name == "bench"
