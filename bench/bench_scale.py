"""Scale-out benchmark: podium on Redis, PostgreSQL and SQLite over HTTP next to Avtomatika on Redis; podium's
engine on PostgreSQL next to the PostgreSQL job queues a Python team would pick instead (procrastinate 3.x,
pgqueuer 1.x) running a no-op job on the same PostgreSQL server.

- HTTP (the server benchmark's work and client, ``bench_server.py``): blueprint ``start ->
  dispatch_task(noop) -> finished``, 4 unmodified ``avtomatika-worker`` 1.0b20 processes (capacity 8), the
  polling client (64 jobs in flight, each polled every 5 ms). Servers: ``podium serve`` on Redis (a key
  prefix of the run's own, deleted after), on PostgreSQL (a schema of its own, dropped after), on SQLite
  (``synchronous=FULL``), and Avtomatika 1.0b30 on its ``RedisStorage`` (in an empty Redis database of
  its own, flushed after; Avtomatika's keys take no prefix of ours). Avtomatika runs fewer jobs
  (``--avt-jobs``): at its rate the full count takes minutes. Avtomatika on Redis loses some jobs (a result
  dropped as a replay): the client gives up on a job after 20 s, counts it lost and takes Avtomatika's
  throughput over the jobs that ended.

- podium: the engine benchmark's work (``bench_engine.py``: blueprint ``start -> dispatch_task(noop) -> end``,
  in-process workers that answer at once), each configuration in a fresh process: latency (p50/p99 of
  single jobs one after another) and throughput (N jobs submitted together, waited for together) with 1 and
  4 workers, on ``sqlite`` (synchronous=FULL) and on ``postgresql`` (its own schema, dropped after).
- procrastinate / pgqueuer: in their own venvs (``bench.peervenv``), each on a fresh database of the same
  server: N no-op jobs deferred together while a worker with the same concurrency runs, timed until the
  last one is done (procrastinate: polled with one count query every 5 ms; pgqueuer: its own completion
  counter). Each uses its documented asyncio API and its own defaults otherwise.

Several instances (1 vs 3 ``podium serve`` on one PostgreSQL schema, remote workers over HTTP) are measured by
``bench_instances.py``. Prints a table and ratios, then one JSON line.

    python bench/bench_scale.py [--quick] [--podium-only] [--no-http] [--no-engine] [--repeat N]
                                [--dsn postgresql://...] [--redis redis://127.0.0.1:6379/0] [--avt-jobs N]
                                [--http podium-redis,podium-postgres,podium-sqlite,avtomatika-redis]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_engine import drop_prefix, run_on_store  # noqa: E402
from bench.common import flush_redis_db, pick_redis_db, report, table  # noqa: E402

DSN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"
AVT_JOB_TIMEOUT_S = 20.0
PROCRASTINATE_REQ = ["procrastinate>=3,<4", "psycopg[binary]>=3.1"]
PGQUEUER_REQ = ["pgqueuer>=1,<2", "asyncpg>=0.29"]


# --- podium -----------------------------------------------------------------------------------------


async def podium_run(url: str, n_latency: int, n_jobs: int, workers: int) -> dict[str, float]:
    """The engine benchmark's work (``bench_engine.run_on_store``) on the store at ``url``."""
    from podium.store import open_store

    return await run_on_store(open_store(url), n_latency, n_jobs, workers)


def podium_isolated(url: str, n_latency: int, n_jobs: int, workers: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--run-podium", url, str(n_latency), str(n_jobs), str(workers)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    if out.returncode != 0:
        raise RuntimeError(f"podium run failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


async def _admin(dsn: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def podium_on_postgres(dsn: str, n_latency: int, n_jobs: int, workers: int) -> dict[str, float]:
    schema = f"podium_bench_{uuid.uuid4().hex[:8]}"
    try:
        return podium_isolated(f"{dsn}?schema={schema}", n_latency, n_jobs, workers)
    finally:
        asyncio.run(_admin(dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def podium_on_sqlite(n_latency: int, n_jobs: int, workers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        return podium_isolated(f"sqlite:///{tmp}/bench.db", n_latency, n_jobs, workers)


# --- peers (each in its own venv, on a fresh database) ------------------------------------------------

PROCRASTINATE_SCRIPT = r"""
import asyncio, json, logging, sys, time
logging.disable(logging.CRITICAL)
import procrastinate

dsn, n_jobs, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

@app.task(name="noop")
async def noop():
    return None

async def main():
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        worker = asyncio.create_task(app.run_worker_async(
            concurrency=concurrency, wait=True, install_signal_handlers=False, delete_jobs="never"))
        await asyncio.sleep(0.5)  # the worker is listening
        t0 = time.perf_counter()
        await asyncio.gather(*(noop.defer_async() for _ in range(n_jobs)))
        while True:
            row = await app.connector.execute_query_one_async(
                "SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'succeeded'")
            if row["n"] >= n_jobs:
                break
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - t0
        worker.cancel()
        try:
            await worker
        except (asyncio.CancelledError, Exception):
            pass
    print(json.dumps({"jobs_s": n_jobs / elapsed}))

asyncio.run(main())
"""

PGQUEUER_SCRIPT = r"""
import asyncio, json, logging, sys, time
logging.disable(logging.CRITICAL)
import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.queries import Queries

dsn, n_jobs, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

async def main():
    conn = await asyncpg.connect(dsn)
    driver = AsyncpgDriver(conn)
    await Queries(driver).install()
    pgq = PgQueuer(driver)
    done = asyncio.Event()
    count = 0

    @pgq.entrypoint("noop", concurrency_limit=concurrency)
    async def noop(job):
        nonlocal count
        count += 1
        if count >= n_jobs:
            done.set()

    runner = asyncio.create_task(pgq.run(batch_size=concurrency))
    await asyncio.sleep(0.5)  # the queue manager is listening
    producer = await asyncpg.connect(dsn)
    queries = Queries(AsyncpgDriver(producer))
    t0 = time.perf_counter()
    await asyncio.gather(*(queries.enqueue("noop", None) for _ in range(n_jobs)))
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - t0
    pgq.shutdown.set()
    try:
        await asyncio.wait_for(runner, 10)
    except (asyncio.TimeoutError, Exception):
        runner.cancel()
    await producer.close()
    await conn.close()
    print(json.dumps({"jobs_s": n_jobs / elapsed}))

asyncio.run(main())
"""


def peer_run(
    name: str, reqs: list[str], script: str, dsn: str, n_jobs: int, concurrency: int
) -> dict[str, float]:
    from bench.peervenv import peer_python

    python = peer_python(name, reqs)
    database = f"podium_bench_{name}"
    base = dsn.rsplit("/", 1)[0]
    asyncio.run(
        _admin(dsn, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)", f"CREATE DATABASE {database}")
    )
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            [str(python), f.name, f"{base}/{database}", str(n_jobs), str(concurrency)],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tempfile.gettempdir(),
        )
    finally:
        Path(f.name).unlink()
        asyncio.run(_admin(dsn, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
    if out.returncode != 0:
        raise RuntimeError(f"{name} run failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# --- HTTP: avtomatika-workers and the polling client (bench_server's) ---------------------------------

HTTP_SYSTEMS = ["podium-redis", "podium-postgres", "podium-sqlite", "avtomatika-redis"]


async def http_one(name: str, args: argparse.Namespace, opts: Any) -> dict[str, float]:
    """One server of :data:`HTTP_SYSTEMS` on a store of the run's own (removed after), the poll client."""
    from bench.bench_server import drive_poll, system

    cleanup: Any = None
    store_url: str | None = None
    if name == "podium-redis":
        from podium.ids import new_ulid_str

        sep = "&" if "?" in args.redis else "?"
        store_url = f"{args.redis}{sep}prefix=podium-bench-{new_ulid_str()}:"
        cleanup = drop_prefix(store_url)
    elif name == "podium-postgres":
        schema = f"podium_bench_{uuid.uuid4().hex[:8]}"
        store_url = f"{args.dsn}?schema={schema}"
        cleanup = _admin(args.dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    elif name == "avtomatika-redis":
        db = await asyncio.to_thread(pick_redis_db)
        store_url = f"{args.redis.rsplit('/', 1)[0]}/{db}"
        cleanup = asyncio.to_thread(flush_redis_db, db)
        # Avtomatika on Redis drops some genuine results as replays (interop-notes): such a job never ends,
        # so the client gives up on a job after AVT_JOB_TIMEOUT_S and reports it lost
        opts = dataclasses.replace(
            opts, n_jobs=args.avt_jobs, n_latency=args.avt_latency, job_timeout_s=AVT_JOB_TIMEOUT_S
        )
    try:
        server = "avtomatika" if name.startswith("avtomatika") else name
        async with system(server, "avtomatika-worker", opts, store_url) as (base, procs):
            return await drive_poll(base, procs, opts)
    finally:
        if cleanup is not None:
            await cleanup


def http_rows(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    from bench.bench_server import Options

    n_latency, n_jobs = (10, 200) if args.quick else (100, 1000)
    opts = Options(
        workers=4, capacity=8, n_latency=n_latency, n_jobs=n_jobs, in_flight=64, poll_s=0.005, quotas=False
    )
    names = [n for n in args.http.split(",") if not (args.podium_only and n.startswith("avtomatika"))]
    return {name: asyncio.run(http_one(name, args, opts)) for name in names}


def http_ratios(rows: dict[str, dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    peer = rows.get("avtomatika-redis")
    for store in ("redis", "postgres", "sqlite"):
        mine = rows.get(f"podium-{store}")
        if mine and peer:
            out[f"http_podium_{store}_over_avtomatika_redis"] = mine["jobs_s"] / peer["jobs_s"]
            out[f"http_podium_{store}_p50_vs_avtomatika_redis"] = mine["p50_ms"] / peer["p50_ms"]
            out[f"http_podium_{store}_cpu_vs_avtomatika_redis"] = mine["cpu_ms_total"] / peer["cpu_ms_total"]
    return out


# --- main -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--run-podium"]:  # one configuration, in the fresh process podium_isolated started
        url, n_latency, n_jobs, workers = argv[1:5]
        print(json.dumps(asyncio.run(podium_run(url, int(n_latency), int(n_jobs), int(workers)))))
        return {}
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small runs (smoke test)")
    parser.add_argument(
        "--podium-only", action="store_true", help="skip procrastinate, pgqueuer and Avtomatika"
    )
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP runs (avtomatika-workers)")
    parser.add_argument("--no-engine", action="store_true", help="skip the engine and job-queue runs")
    parser.add_argument(
        "--http", default=",".join(HTTP_SYSTEMS), help="the HTTP runs' servers (comma-separated)"
    )
    parser.add_argument("--dsn", default=DSN, help="PostgreSQL server (a database podium may add schemas to)")
    parser.add_argument("--redis", default=REDIS, help="Redis server (podium takes a key prefix of its own)")
    parser.add_argument("--avt-jobs", type=int, default=None, help="Avtomatika's jobs (HTTP throughput run)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per configuration; the best throughput is kept (a shared box)",
    )
    args = parser.parse_args(argv)
    n_latency, n_jobs = (20, 200) if args.quick else (200, 2000)
    if args.avt_jobs is None:
        args.avt_jobs = 40 if args.quick else 200
    args.avt_latency = 5 if args.quick else 20

    def best(run: Any, *run_args: Any) -> dict[str, float]:
        results = [run(*run_args) for _ in range(max(1, args.repeat))]
        return max(results, key=lambda r: r["jobs_s"])

    http = {} if args.no_http else http_rows(args)
    rows: dict[str, dict[str, float]] = {}
    for w in (1, 4) if not args.no_engine else ():
        rows[f"podium-sqlite/{w}w"] = best(podium_on_sqlite, n_latency, n_jobs, w)
        rows[f"podium-postgres/{w}w"] = best(podium_on_postgres, args.dsn, n_latency, n_jobs, w)
    if not args.podium_only and not args.no_engine:
        for w in (1, 4):
            rows[f"procrastinate/{w}w"] = best(
                peer_run, "procrastinate", PROCRASTINATE_REQ, PROCRASTINATE_SCRIPT, args.dsn, n_jobs, w
            )
            rows[f"pgqueuer/{w}w"] = best(
                peer_run, "pgqueuer", PGQUEUER_REQ, PGQUEUER_SCRIPT, args.dsn, n_jobs, w
            )
    ratios: dict[str, float] = http_ratios(http)
    for w in (1, 4) if not args.no_engine else ():
        pg = rows[f"podium-postgres/{w}w"]["jobs_s"]
        ratios[f"postgres_over_sqlite_{w}w"] = pg / rows[f"podium-sqlite/{w}w"]["jobs_s"]
        for peer in ("procrastinate", "pgqueuer"):
            if f"{peer}/{w}w" in rows:
                ratios[f"postgres_over_{peer}_{w}w"] = pg / rows[f"{peer}/{w}w"]["jobs_s"]
    table_rows = [
        [name, r.get("p50_ms", float("nan")), r.get("p99_ms", float("nan")), r["jobs_s"]]
        for name, r in rows.items()
    ]
    figures = {
        "rows": rows,
        "http": http,
        "ratios": ratios,
        "n_jobs": n_jobs,
        "n_latency": n_latency,
        "avt_jobs": args.avt_jobs,
        "repeat": args.repeat,
    }
    if http:
        print("== HTTP: 4 avtomatika-worker 1.0b20 processes (capacity 8), poll client, 64 in flight ==")
        print(
            table(
                [
                    "server/store",
                    "jobs",
                    "lost",
                    "p50 ms",
                    "p99 ms",
                    "jobs/s",
                    "cpu ms/job server",
                    "workers",
                    "total",
                ],
                [
                    [
                        name,
                        args.avt_jobs if name.startswith("avtomatika") else (200 if args.quick else 1000),
                        int(r.get("lost_jobs", 0)),
                        r["p50_ms"],
                        r["p99_ms"],
                        r["jobs_s"],
                        r["cpu_ms_server"],
                        r["cpu_ms_workers"],
                        r["cpu_ms_total"],
                    ]
                    for name, r in http.items()
                ],
            )
        )
    for key, value in ratios.items():
        print(f"{key}: {value:.2f}x")
    report("scale", ["system/workers", "p50 ms", "p99 ms", "jobs/s"], table_rows, figures)
    return figures


if __name__ == "__main__":
    main()
