"""The benchmark convention: a table for people, then one JSON line of every figure for machines.

Each ``bench/bench_<area>.py`` gathers its figures in a dict and calls :func:`report`. Comparisons with a
peer run the same work in the peer's own venv (:mod:`bench.peervenv`) in the same run, and report ratios.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["flush_redis_db", "pick_redis_db", "report", "table"]

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def report(name: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], figures: dict[str, Any]) -> None:
    """Print the table, then ``{"bench": name, ...figures}`` as one JSON line."""
    print(f"== {name} ==")
    print(table(headers, rows))
    print(json.dumps({"bench": name, **figures}, sort_keys=True))
    sys.stdout.flush()


def pick_redis_db(host: str = REDIS_HOST, port: int = REDIS_PORT) -> int:
    """The first empty Redis database of 15..8 (ours for the run, flushed afterwards): for peers whose keys
    take no prefix of ours."""
    import redis

    for db in range(15, 7, -1):
        client = redis.Redis(host=host, port=port, db=db)
        try:
            if client.dbsize() == 0:
                return db
        finally:
            client.close()
    raise RuntimeError(f"no empty Redis database among 8..15 at {host}:{port}")


def flush_redis_db(db: int, host: str = REDIS_HOST, port: int = REDIS_PORT) -> int:
    """Empty a database :func:`pick_redis_db` gave; how many keys it held."""
    import redis

    client = redis.Redis(host=host, port=port, db=db)
    try:
        n = int(client.dbsize())
        client.flushdb()
        return n
    finally:
        client.close()
