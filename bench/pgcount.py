"""``podium serve`` with every PostgreSQL statement (or Redis round trip, script call and pub/sub message)
counted (``bench_instances.py --statements``).

    python -m bench.pgcount OUT.json serve --port ... --storage postgresql://...

Wraps asyncpg's statement execution in this process and writes ``{statement's first words: count}`` to
``OUT.json`` every half second (the server ends by a signal, which skips exit hooks).
"""

from __future__ import annotations

import collections
import json
import os
import sys
import threading
import time
from typing import Any

COUNTS: collections.Counter[str] = collections.Counter()


def _key(query: str) -> str:
    return " ".join(query.split())[:60]


def install() -> None:
    import asyncpg.connection as connection

    execute_args = connection.Connection._execute
    execute_text = connection.Connection.execute

    async def counted_args(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        COUNTS[_key(query)] += 1
        return await execute_args(self, query, *args, **kwargs)

    async def counted_text(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        if not args:  # with arguments it goes through _execute, counted there
            COUNTS[_key(query)] += 1
        return await execute_text(self, query, *args, **kwargs)

    connection.Connection._execute = counted_args  # type: ignore[method-assign]
    connection.Connection.execute = counted_text  # type: ignore[method-assign]
    _install_redis()
    _install_store()


def _install_store() -> None:
    """On PostgreSQL, the store's own events: ``pg batch`` (group commits) and ``pg calls`` (the calls they
    held), ``pg fallback`` (planned batches run call by call), ``pg conflict`` (version conflicts raised),
    ``pg notify in`` / ``pg notify own`` (notifications read from other processes / from this one),
    ``pg take`` / ``pg take empty`` / ``pg take leases`` (takes, takes that found nothing, items they leased), and
    ``pg pushed`` (tasks leased straight to a waiting poll or in-process worker by the write that dispatched them)."""
    from podium import errors
    from podium.store import pg_write, postgres

    store = postgres.PostgresStore
    writer = pg_write.Writer
    commit, planned, on_notify, take_now = (
        store._commit,
        writer.planned,
        store._on_notify,
        store.take_now_fetching,
    )

    async def counted_commit(self: Any, conn: Any, batch: Any, **kwargs: Any) -> Any:
        COUNTS["pg batch"] += 1
        COUNTS["pg calls"] += len(batch)
        return await commit(self, conn, batch, **kwargs)

    async def counted_planned(self: Any, conn: Any, batch: Any) -> Any:
        try:
            return await planned(self, conn, batch)
        except postgres.Fallback:
            COUNTS["pg fallback"] += 1
            raise

    def counted_notify(self: Any, conn: Any, pid: int, channel: str, payload: str) -> None:
        COUNTS["pg notify own" if pid in self._own_pids else "pg notify in"] += 1
        on_notify(self, conn, pid, channel, payload)

    async def counted_take(self: Any, *args: Any, **kwargs: Any) -> Any:
        leases = await take_now(self, *args, **kwargs)
        COUNTS["pg take"] += 1
        COUNTS["pg take empty"] += not leases
        COUNTS["pg take leases"] += len(leases)
        return leases

    from podium.engine import dispatch

    deliver_pushed = dispatch.Dispatch.deliver_pushed

    def counted_push(self: Any, plan: Any, worker: Any, lease: Any) -> None:
        COUNTS["pg pushed"] += lease is not None
        deliver_pushed(self, plan, worker, lease)

    dispatch.Dispatch.deliver_pushed = counted_push  # type: ignore[method-assign]

    conflict_init = errors.ConflictError.__init__

    def counted_conflict(self: Any, *args: Any, **kwargs: Any) -> None:
        COUNTS["pg conflict"] += 1
        conflict_init(self, *args, **kwargs)

    store._commit = counted_commit  # type: ignore[method-assign]
    writer.planned = counted_planned  # type: ignore[method-assign]
    store._on_notify = counted_notify  # type: ignore[method-assign]
    store.take_now_fetching = counted_take  # type: ignore[method-assign]
    errors.ConflictError.__init__ = counted_conflict  # type: ignore[method-assign]


def _install_redis() -> None:
    """On Redis: ``redis pipeline`` (round trips of the store's pipeliner), ``redis <SCRIPT>`` (calls of
    each script), ``redis message`` (pub/sub messages the wake-up listener read)."""
    try:
        from redis.asyncio.client import PubSub

        from podium.store import redis as store_redis
    except ImportError:
        return
    names = {store_redis._sha1(getattr(store_redis.redis_lua, n)): n for n in store_redis.redis_lua.__all__}
    pipeline = store_redis._Pipeliner._pipeline
    get_message = PubSub.get_message

    async def counted_pipeline(self: Any, commands: list[tuple[Any, ...]]) -> Any:
        COUNTS["redis pipeline"] += 1
        for command in commands:
            name = names.get(command[1], "?") if command[0] == "EVALSHA" else str(command[0])
            COUNTS[f"redis {name}"] += 1
        return await pipeline(self, commands)

    async def counted_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        message = await get_message(self, *args, **kwargs)
        if message is not None and message.get("type") in ("message", "pmessage"):
            COUNTS["redis message"] += 1
        return message

    store_redis._Pipeliner._pipeline = counted_pipeline  # type: ignore[method-assign]
    PubSub.get_message = counted_message  # type: ignore[method-assign]


def _dump(path: str) -> None:
    while True:
        time.sleep(0.5)
        with open(f"{path}.tmp", "w") as f:
            json.dump(dict(COUNTS), f)
        os.replace(f"{path}.tmp", path)  # a reader never sees a half-written file


def main() -> None:
    out, *argv = sys.argv[1:]
    install()
    threading.Thread(target=_dump, args=(out,), daemon=True).start()
    sys.argv = ["podium", *argv]
    from podium.cli import main as podium_main

    podium_main()


if __name__ == "__main__":
    main()
