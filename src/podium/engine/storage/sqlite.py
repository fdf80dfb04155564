"""SQLite storage: podium's embedded durable default for the engine."""

from __future__ import annotations

from pathlib import Path

from podium.clock import Clock
from podium.store.sqlite import SQLiteStore

__all__ = ["SQLiteStorage"]


class SQLiteStorage(SQLiteStore):
    """One SQLite file (WAL). ``synchronous="NORMAL"`` survives a process crash but not a power cut."""

    def __init__(self, path: str | Path, *, clock: Clock | None = None, synchronous: str = "FULL") -> None:
        super().__init__(path, clock=clock, synchronous=synchronous)
