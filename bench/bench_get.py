"""Server CPU per status poll: ``GET /api/v1/jobs/{id}`` of finished jobs, nothing else happening.

The poll client of ``bench_server.py`` makes 10-30 GETs per job, and what one costs the server is hidden in its
CPU per job (with the job's own work, which on durable SQLite batches differently at each throughput). Here
one worker (``avtomatika-worker``) finishes ``C`` jobs, then ``C`` keep-alive connections poll them (``N``
GETs per round, one in flight per connection) and the server's CPU (``/proc/<pid>/stat``, user + system,
so the system calls count) is divided by the GETs; the best of ``R`` rounds is reported (others' load on
the machine only adds).

    python bench/bench_get.py [--only podium-sqlite,podium-memory,avtomatika] [--gets 20000] [--rounds 3]
                              [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_server import CLIENT_TOKEN, Options, _poll_until_done, _submit, cpu_s, system  # noqa: E402
from bench.common import report  # noqa: E402
from bench.rawhttp import RawClient  # noqa: E402

SYSTEMS = ("podium-sqlite", "podium-memory", "avtomatika")


async def measure(server: str, gets: int, rounds: int, connections: int) -> dict[str, float]:
    """The best server CPU per GET (us) over ``rounds`` rounds of ``gets`` GETs, and that round's GET/s."""
    opts = Options(
        workers=1, capacity=8, n_latency=0, n_jobs=0, in_flight=connections, poll_s=0.0, quotas=False
    )
    async with (
        system(server, "avtomatika-worker", opts) as (base, procs),
        RawClient(base, {"X-Client-Token": CLIENT_TOKEN}, connections) as http,
    ):
        body = json.dumps({"initial_data": {}}).encode()
        ids = [await _submit(http, body) for _ in range(connections)]
        for job_id in ids:
            await _poll_until_done(http, job_id, 0.001)
        pid = procs.server.pid
        best = (float("inf"), 0.0)
        left = [0]

        async def lane(job_id: str) -> None:
            while left[0] > 0:
                left[0] -= 1
                status, payload = await http.get(f"/api/v1/jobs/{job_id}")
                if status != 200:
                    raise RuntimeError(f"GET {job_id}: {status} {payload[:200]!r}")

        for _ in range(rounds):
            left[0] = gets
            cpu0, t0 = cpu_s(pid), time.perf_counter()
            await asyncio.gather(*(lane(j) for j in ids))
            cpu1, t1 = cpu_s(pid), time.perf_counter()
            best = min(best, ((cpu1 - cpu0) / gets * 1e6, gets / (t1 - t0)))
    return {"cpu_us_per_get": best[0], "gets_s": best[1]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(SYSTEMS), help=f"systems: {','.join(SYSTEMS)}")
    parser.add_argument("--gets", type=int, default=20000, help="GETs per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; known: {', '.join(SYSTEMS)}")
    figures: dict[str, Any] = {"loadavg_1m_before": os.getloadavg()[0], "gets": args.gets}
    rows = []
    for name in names:
        result = asyncio.run(measure(name, args.gets, args.rounds, args.connections))
        figures.update({f"{name.replace('-', '_')}_{k}": v for k, v in result.items()})
        rows.append([name, result["cpu_us_per_get"], result["gets_s"]])
    report("get", ["server", "server CPU us per GET", "GET/s"], rows, figures)
    return figures


if __name__ == "__main__":
    main()
