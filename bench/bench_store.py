"""Store operations per second: record writes and queue take+ack, memory and SQLite.

    python bench/bench_store.py [--n 2000] [--concurrency 1,16]

SQLite runs with ``synchronous=FULL`` (durable before a call returns, as shipped) and ``NORMAL``
(durable against a process crash). With concurrency > 1, the SQLite backend group-commits concurrent
calls, which is what the figures at 16 show. There is no peer store to compare against here.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import report
from podium.store import MemoryStore, Store
from podium.store.sqlite import SQLiteStore


async def _run(concurrency: int, n: int, op: Callable[[int], Awaitable[None]]) -> float:
    per = n // concurrency

    async def lane(lane_no: int) -> None:
        for i in range(per):
            await op(lane_no * per + i)

    start = time.perf_counter()
    await asyncio.gather(*(lane(k) for k in range(concurrency)))
    return (per * concurrency) / (time.perf_counter() - start)


async def measure(store: Store, n: int, concurrency: int) -> dict[str, float]:
    async with store:

        async def write(i: int) -> None:
            await store.put("job", f"r{concurrency}-{i}", {"i": i, "state": "running", "payload": "x" * 64})

        async def enqueue(i: int) -> None:
            await store.enqueue("q", f"t{concurrency}-{i}", {"i": i})

        async def take_ack(i: int) -> None:
            leases = await store.take("q", owner="bench", lease_s=30)
            if leases:
                await store.ack(leases[0])

        writes = await _run(concurrency, n, write)
        await _run(concurrency, n, enqueue)
        take_acks = await _run(concurrency, n, take_ack)
    return {"record_write_ops": writes, "take_ack_ops": take_acks}


async def main(n: int, concurrencies: list[int]) -> None:
    rows = []
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for concurrency in concurrencies:
            backends: list[tuple[str, Store]] = [
                ("memory", MemoryStore()),
                ("sqlite-full", SQLiteStore(Path(tmp) / f"full-{concurrency}.db")),
                ("sqlite-normal", SQLiteStore(Path(tmp) / f"normal-{concurrency}.db", synchronous="NORMAL")),
            ]
            for name, store in backends:
                result = await measure(store, n, concurrency)
                rows.append([name, concurrency, result["record_write_ops"], result["take_ack_ops"]])
                for key, value in result.items():
                    figures[f"{name}_c{concurrency}_{key}"] = round(value, 1)
    report("store", ["backend", "concurrency", "record writes/s", "take+ack/s"], rows, figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args()
    asyncio.run(main(200 if args.quick else args.n, [int(c) for c in args.concurrency.split(",")]))
