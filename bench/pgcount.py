"""``podium serve`` with every PostgreSQL statement counted (``bench_instances.py --statements``).

    python -m bench.pgcount OUT.json serve --port ... --storage postgresql://...

Wraps asyncpg's statement execution in this process and writes ``{statement's first words: count}`` to
``OUT.json`` every half second (the server ends by a signal, which skips exit hooks).
"""

from __future__ import annotations

import collections
import json
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


def _dump(path: str) -> None:
    while True:
        time.sleep(0.5)
        with open(path, "w") as f:
            json.dump(dict(COUNTS), f)


def main() -> None:
    out, *argv = sys.argv[1:]
    install()
    threading.Thread(target=_dump, args=(out,), daemon=True).start()
    sys.argv = ["podium", *argv]
    from podium.cli import main as podium_main

    podium_main()


if __name__ == "__main__":
    main()
