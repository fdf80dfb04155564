"""The SQLite store reads on its own connection: a read neither waits behind a commit in progress nor misses
a call that returned before it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from podium.store import Put, SQLiteStore, open_store, sqlite_path, sqlite_synchronous


async def test_a_read_does_not_wait_for_the_writer(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    try:
        await store.apply(Put("job", "j1", {"n": 1}, None, "running"))
        release = threading.Event()

        def busy(conn: sqlite3.Connection) -> None:  # a write whose commit takes long (a slow fsync)
            release.wait(10)

        writing = store._call(busy)
        try:
            # the writer thread is stuck; the read still answers, with the last returned write
            rec = await asyncio.wait_for(store.get("job", "j1"), 5)
            assert rec is not None and rec.data == {"n": 1}
            assert await asyncio.wait_for(store.count("job", status="running"), 5) == 1
        finally:
            release.set()
        await writing
        await store.apply(Put("job", "j1", {"n": 2}, rec.version, "finished"))
        after = await store.get("job", "j1")
        assert after is not None and after.data == {"n": 2} and after.status == "finished"
        assert [r.id for r in await store.list("job", status="finished")] == ["j1"]
    finally:
        await store.close()


def test_store_urls_name_the_synchronous_level(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db?synchronous=normal"
    assert sqlite_path(url) == f"{tmp_path}/a.db"
    assert sqlite_synchronous(url) == "NORMAL"
    assert sqlite_synchronous(f"sqlite:///{tmp_path}/a.db") == "FULL"
    store = open_store(url)
    assert isinstance(store, SQLiteStore) and store.synchronous == "NORMAL"
    with pytest.raises(ValueError, match="synchronous='OFF'"):
        sqlite_synchronous("sqlite:///a.db?synchronous=off")
    with pytest.raises(ValueError, match="unknown option 'mode'"):
        sqlite_synchronous("sqlite:///a.db?mode=ro")
