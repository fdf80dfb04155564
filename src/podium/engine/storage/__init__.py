"""Storage for the engine (Avtomatika's ``avtomatika.storage`` face): every class is a
:class:`podium.store.Store`.

``MemoryStorage()`` keeps everything in the process (tests, demos); ``SQLiteStorage(path)`` is podium's
embedded durable default (one file, WAL); ``RedisStorage(redis.asyncio.Redis(...))`` or
``RedisStorage("redis://host:port/db?prefix=name")`` shares one Redis among several instances.
"""

from __future__ import annotations

from typing import Any

from podium.engine.storage.memory import MemoryStorage
from podium.store.base import Store

__all__ = ["MemoryStorage", "RedisStorage", "SQLiteStorage", "StorageBackend"]

StorageBackend = Store
"""Avtomatika's name for the storage base class."""


def __getattr__(name: str) -> Any:
    if name == "SQLiteStorage":
        from podium.engine.storage.sqlite import SQLiteStorage

        return SQLiteStorage
    if name == "RedisStorage":
        from podium.engine.storage.redis import RedisStorage

        return RedisStorage
    raise AttributeError(name)
