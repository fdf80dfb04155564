"""A fresh key prefix on a real Redis for one test, deleted afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from podium.ids import new_ulid_str


@asynccontextmanager
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """Yield ``redis_url`` with a new ``prefix`` (``podium-test-<ulid>``); delete its keys on the way out."""
    import redis.asyncio as aioredis

    prefix = f"podium-test-{new_ulid_str()}:"
    sep = "&" if "?" in redis_url else "?"
    try:
        yield f"{redis_url}{sep}prefix={prefix}"
    finally:
        client = aioredis.Redis.from_url(redis_url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
            if keys:
                await client.unlink(*keys)
        finally:
            await client.aclose()
