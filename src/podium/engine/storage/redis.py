"""Redis storage (Avtomatika's ``avtomatika.storage.redis.RedisStorage``): several engine instances share
one Redis server."""

from __future__ import annotations

from typing import Any

from podium.clock import Clock
from podium.store.redis import RedisStore

__all__ = ["RedisStorage"]


class RedisStorage(RedisStore):
    """``RedisStorage(redis.asyncio.Redis(...))`` as in Avtomatika, or ``RedisStorage("redis://host/0")``;
    ``prefix`` keeps deployments on one server apart (default ``podium``)."""

    def __init__(self, url: str | Any, *, clock: Clock | None = None, prefix: str | None = None) -> None:
        super().__init__(url, clock=clock, prefix=prefix)
