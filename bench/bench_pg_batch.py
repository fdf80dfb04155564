"""PostgreSQL group commit alone: batches of a result's shape through one store, CPU per call.

One process, a pool of 3 (one writer: every round's calls share a batch). A round enqueues and takes
``size`` items, then applies ``size`` calls side by side, each ``Put`` of an existing record under its version,
``Ack`` of its lease, ``Enqueue`` of a next item, ``Append`` and ``Put`` of a new record (what a task's result
writes). Printed: calls per second and the CPU milliseconds per call of this process and of its PostgreSQL
backends (read from ``/proc``: the server must run on this machine).

    python bench/bench_pg_batch.py [--rounds 150] [--sizes 4,16] [--dsn postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_server import cpu_s  # noqa: E402
from podium.store import Ack, Append, Enqueue, Put  # noqa: E402
from podium.store.postgres import PostgresStore  # noqa: E402

DSN = "postgresql://postgres@127.0.0.1:5432/test"


async def run(dsn: str, rounds: int, size: int) -> dict[str, float]:
    from tests.conformance.conftest import drop_pg_schema

    url = f"{dsn}?schema=podium_bench_batch_{uuid.uuid4().hex[:8]}"
    try:
        async with PostgresStore(url, pool_size=3) as store:
            await asyncio.gather(*(store.put("job", f"j{i}", {"a": 0}) for i in range(size)))

            async def one_round(r: int) -> None:
                await asyncio.gather(*(store.enqueue("q", f"t{r}-{i}", {}) for i in range(size)))
                leases = await store.take("q", owner="w", lease_s=30, limit=size)
                jobs = await store.get_many([("job", f"j{i}") for i in range(size)])
                await asyncio.gather(
                    *(
                        store.apply(
                            Put("job", f"j{i}", {"a": r}, expected_version=job.version if job else None),
                            Ack(lease),
                            Enqueue("q2", f"s{r}-{i}", {}),
                            Append(f"j{i}", "ev"),
                            Put("task", f"t{r}-{i}", {"x": 1}, expected_version=0),
                        )
                        for i, (lease, job) in enumerate(zip(leases, jobs, strict=True))
                    )
                )

            await one_round(-1)
            pids = list(store._own_pids)
            backends, me, t0 = sum(cpu_s(p) for p in pids), cpu_s(), time.perf_counter()
            for r in range(rounds):
                await one_round(r)
            elapsed = time.perf_counter() - t0
            n = rounds * size
            return {
                "calls_s": n / elapsed,
                "cpu_ms_postgres": (sum(cpu_s(p) for p in pids) - backends) * 1e3 / n,
                "cpu_ms_client": (cpu_s() - me) * 1e3 / n,
            }
    finally:
        await drop_pg_schema(url)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--sizes", default="4,16")
    parser.add_argument("--dsn", default=DSN)
    args = parser.parse_args()
    for size in (int(x) for x in args.sizes.split(",")):
        figures = asyncio.run(run(args.dsn, args.rounds, size))
        print(f"batch of {size}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
