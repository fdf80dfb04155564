"""podium.store: the storage protocol and its backends.

``open_store(url)`` picks a backend from a URL: ``memory://``, ``sqlite:///path/to/podium.db`` (the
embedded default; relative paths are fine: ``sqlite:///podium-data/podium.db``; ``?synchronous=NORMAL``
trades durability against a power cut for speed, see :class:`SQLiteStore`),
``postgresql://user@host:5432/db?schema=podium`` (several instances on one database; ``pip install
'podium[postgres]'``) or ``redis://host:port/db?prefix=name`` (several instances on one Redis; ``pip install
'podium[redis]'``). A ``history=<store URL>`` argument keeps the history in another store (a split
deployment: :class:`~podium.store.split.SplitStore`).
"""

from __future__ import annotations

from podium.clock import Clock
from podium.store.base import (
    SCHEMA_VERSION,
    Ack,
    Append,
    Delete,
    Dequeue,
    Enqueue,
    Fetch,
    HistoryEntry,
    Lease,
    Op,
    Put,
    Record,
    Store,
    Wake,
)
from podium.store.memory import MemoryStore
from podium.store.ownership import FencedOwnership

__all__ = [
    "SCHEMA_VERSION",
    "Ack",
    "Append",
    "Delete",
    "Dequeue",
    "Enqueue",
    "FencedOwnership",
    "Fetch",
    "HistoryEntry",
    "Lease",
    "MemoryStore",
    "Op",
    "PostgresStore",
    "Put",
    "Record",
    "RedisStore",
    "SQLiteStore",
    "Store",
    "Wake",
    "open_store",
]


def __getattr__(name: str) -> object:
    if name == "SQLiteStore":
        from podium.store.sqlite import SQLiteStore

        return SQLiteStore
    if name == "RedisStore":
        from podium.store.redis import RedisStore

        return RedisStore
    if name == "PostgresStore":
        from podium.store.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(name)


def open_store(url: str, *, clock: Clock | None = None) -> Store:
    """Build (not yet open) the store a URL names: ``memory://``, ``sqlite:///path``, ``postgresql://...`` or
    ``redis://host:port/db?prefix=name``; a ``history=<store URL>`` argument keeps the history in that
    other store (a split deployment, :class:`~podium.store.split.SplitStore`)."""
    if "history=" in url:  # a split deployment: state in one store, history in another
        from podium.store.split import SplitStore, split_history_url

        state_url, history_url = split_history_url(url)
        if history_url is not None:
            return SplitStore(open_store(state_url, clock=clock), open_store(history_url, clock=clock))
    if url.startswith("memory:"):
        return MemoryStore(clock=clock)
    if url.startswith("sqlite:"):
        from podium.store.sqlite import SQLiteStore

        return SQLiteStore(sqlite_path(url), clock=clock, synchronous=sqlite_synchronous(url))
    if url.startswith(("postgresql:", "postgres:")):
        from podium.store.postgres import PostgresStore

        return PostgresStore(url, clock=clock)
    if url.startswith(("redis:", "rediss:")):
        from podium.store.redis import RedisStore

        return RedisStore(url, clock=clock)
    scheme = url.split(":", 1)[0]
    raise ValueError(
        f"unknown store URL scheme {scheme!r} in {url!r}: use memory://, sqlite:///path, postgresql://..."
        " or redis://host:port/db"
    )


_SYNCHRONOUS = ("FULL", "NORMAL", "EXTRA")


def sqlite_path(url: str) -> str:
    """The file path in a ``sqlite:///path`` URL (``sqlite:////abs/path`` for absolute paths)."""
    path = url.split(":", 1)[1].split("?", 1)[0]
    if path.startswith("///"):
        return path[3:]
    if path.startswith("//"):
        return path[2:]
    return path


def sqlite_synchronous(url: str) -> str:
    """The ``synchronous`` level a ``sqlite:///path?synchronous=NORMAL`` URL asks for (default ``FULL``:
    every call durable before it returns; ``NORMAL`` survives a process crash, not a power cut)."""
    from urllib.parse import parse_qs

    query = parse_qs(url.partition("?")[2])
    unknown = sorted(set(query) - {"synchronous"})
    if unknown:
        raise ValueError(
            f"unknown option {unknown[0]!r} in store URL {url!r} (synchronous=FULL|NORMAL|EXTRA)"
        )
    level = query.get("synchronous", ["FULL"])[-1].upper()
    if level not in _SYNCHRONOUS:
        raise ValueError(f"synchronous={level!r} in store URL {url!r}: use FULL, NORMAL or EXTRA")
    return level
