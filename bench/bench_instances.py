"""Scale-out benchmark, instances: 1 vs 3 ``podium serve`` processes on one PostgreSQL schema (and, with
``--redis``, on one Redis key prefix), with the
server benchmark's remote work (``bench_server.py``: blueprint ``start -> dispatch_task(noop) -> finished``,
``W`` ``podium.worker`` processes answering at once, spread over the instances; this process submits over
HTTP, round-robin over the instances, and counts the ``job_finished`` webhooks).

Figures per configuration: throughput (jobs/s of ``N`` jobs submitted together) and the CPU time per job of
the server processes (summed), the workers (summed), this driver and PostgreSQL (its backends, summed from
``/proc`` when the server runs on this machine): on a 2-core machine CPU per job bounds throughput, and
``docs/scaling.md`` builds its model from these per-job costs.

``--statements`` runs each server under ``bench/pgcount.py`` and adds the PostgreSQL statements per job (all
instances summed, warm-up included), by kind, and on Redis the round trips, the pub/sub messages read and
the takes per job: where the extra cost of several instances goes.

``--rounds N`` runs every configuration N times, alternately (on a shared machine the load moves between
runs: each round's ratio compares runs made side by side, and the median over the rounds is printed and kept in
the JSON line as ``ratio_medians``); ``--no-postgres`` runs on Redis only.

``--on-first`` sends all the work (the workers' connections and the client's) to the first instance, the others
running idle: what several instances cost when the load is not spread. ``machine_busy`` is the share of the
machine's CPU time busy while the jobs ran (near 1: the run was CPU-bound).

``--sdk avtomatika-worker`` runs unmodified avtomatika-worker 1.0b20 processes (in their own venv) instead of
``podium.worker``, and ``--client poll`` the server benchmark's poll client instead of webhooks (64 jobs in
flight, lane ``k`` submitting to instance ``k mod n`` and polling ``GET /api/v1/jobs/{id}`` there every 5 ms):
the configuration an Avtomatika user runs first, spread over the instances.

    python bench/bench_instances.py [--quick] [--instances 1,3] [--workers 4] [--capacity 8] [--jobs N]
                                    [--dsn postgresql://...] [--redis redis://127.0.0.1:6379/0] [--statements]
                                    [--rounds N] [--no-postgres] [--sdk podium|avtomatika-worker]
                                    [--client webhook|poll] [--on-first]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_server import (  # noqa: E402
    AVTOMATIKA_WORKER,
    AVTOMATIKA_WORKER_REQ,
    CLIENT_TOKEN,
    PODIUM_BLUEPRINT,
    PODIUM_WORKER,
    WORKER_TOKEN,
    RawClient,
    _poll_until_done,
    _submit,
    cpu_s,
    free_port,
    receiver_server,
    stop_all,
    wait_http,
    wait_workers,
)
from bench.common import report  # noqa: E402
from bench.peervenv import peer_python  # noqa: E402

DSN = "postgresql://postgres@127.0.0.1:5432/test"
POLL_LANES = 64
"""Jobs in flight with the poll client (``--client poll``), as in ``bench_server.py``."""
POLL_S = 0.005
"""The poll client's pause between two polls of a job."""


def postgres_cpu_s() -> float:
    """CPU time used so far by the local PostgreSQL server's processes (0 when none can be read)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(postgres)" in text or "(postmaster)" in text:
            total += cpu_s(int(stat.parent.name))
    return total


def postgres_cpu_by_pid() -> dict[int, float]:
    """CPU time used so far by each process of the local PostgreSQL server (pid -> seconds)."""
    out: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            if "(postgres)" in text or "(postmaster)" in text:
                out[int(stat.parent.name)] = cpu_s(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def own_backends(server_pids: list[int]) -> set[int]:
    """The PostgreSQL backends serving these processes' connections (matched by the client's TCP port; the
    machine is shared, and other sessions' backends are not ours to count)."""
    inodes: set[str] = set()
    for pid in server_pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    out: set[int] = set()
    for cmd in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmd.read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text.startswith("postgres: ") and "(" in text:
            port = text.rsplit("(", 1)[1].split(")", 1)[0]
            if port.isdigit() and int(port) in ports:
                out.add(int(cmd.parent.name))
    return out


def _statements(paths: list[str], jobs: int) -> dict[str, float]:
    """PostgreSQL statements per job, all instances summed: in total, and the reads, commits, takes."""
    total: dict[str, int] = {}
    for path in paths:
        for key, n in json.loads(Path(path).read_text()).items():
            total[key] = total.get(key, 0) + n
    kinds = {
        "stmt_reads": ("SELECT kind, id, version, status",),
        "stmt_commits": ("COMMIT",),
        "stmt_takes": ("WITH picked", "WITH tk AS"),
        # on Redis: round trips, pub/sub messages read, TAKE calls
        "redis_round_trips": ("redis pipeline",),
        "redis_messages": ("redis message",),
        "redis_takes": ("redis TAKE",),
    }
    out = {"stmt_total": sum(n for k, n in total.items() if not k.startswith(("redis ", "pg "))) / jobs}
    for name, prefixes in kinds.items():
        out[name] = sum(n for k, n in total.items() if k.startswith(prefixes)) / jobs
    out.update({k: n / jobs for k, n in total.items() if k.startswith(("redis ", "pg "))})  # in the JSON line
    if os.environ.get("BENCH_STATEMENT_KINDS"):  # every statement kind per job, in the JSON line
        out.update({f"sql {k}": n / jobs for k, n in total.items() if not k.startswith(("redis ", "pg "))})
    return out


def _switches(pids: list[int]) -> int:
    """The context switches (voluntary and not) of these processes so far (0 where /proc cannot tell)."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def _machine_jiffies() -> tuple[int, int]:
    """(busy, all) clock ticks of every CPU of this machine so far (``/proc/stat``; (0, 0) where it cannot
    tell)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle, iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def _cpu(server_pids: list[int], worker_pids: list[int]) -> dict[str, float]:
    return {
        "servers": sum(cpu_s(p, children=True) for p in server_pids),
        "workers": sum(cpu_s(p) for p in worker_pids),
        "driver": cpu_s(),
        "postgres": postgres_cpu_s(),
    }


class _Measure:
    """CPU of the servers, workers, this driver and PostgreSQL's backends, and the servers' context switches,
    from :meth:`start` to :meth:`stop`, per job."""

    def __init__(self, server_pids: list[int], worker_pids: list[int]) -> None:
        self.server_pids, self.worker_pids = server_pids, worker_pids

    def start(self) -> None:
        self.before = _cpu(self.server_pids, self.worker_pids)
        self.pg_before = postgres_cpu_by_pid()
        self.switches = _switches(self.server_pids)
        self.jiffies = _machine_jiffies()

    def stop(self, n_jobs: int) -> dict[str, float]:
        after = _cpu(self.server_pids, self.worker_pids)
        pg_after = postgres_cpu_by_pid()
        own = own_backends(self.server_pids)
        switches = _switches(self.server_pids) - self.switches
        cpu = {f"cpu_ms_{k}": (after[k] - self.before[k]) * 1e3 / n_jobs for k in self.before}
        cpu["cpu_ms_total"] = sum(cpu.values())
        cpu["cpu_ms_pg_own"] = (
            sum(pg_after[p] - self.pg_before.get(p, 0.0) for p in own if p in pg_after) * 1e3 / n_jobs
        )
        cpu["ctx_switches_servers"] = switches / n_jobs
        busy, total = (b - a for a, b in zip(self.jiffies, _machine_jiffies(), strict=True))
        # the share of the machine's CPU time busy while the jobs ran: near 1, the run is CPU-bound
        cpu["machine_busy"] = busy / total if total else 0.0
        return cpu


@contextlib.asynccontextmanager
async def _clients(bases: list[str], lanes: int) -> AsyncIterator[list[RawClient]]:
    """A client per instance, with a connection for each of the ``lanes`` (spread round-robin) it serves."""
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                RawClient(base, {"X-Client-Token": CLIENT_TOKEN}, len(range(k, lanes, len(bases))))
            )
            for k, base in enumerate(bases)
        ]


async def drive_many(
    bases: list[str], n_jobs: int, server_pids: list[int], worker_pids: list[int]
) -> dict[str, float]:
    measure = _Measure(server_pids, worker_pids)
    async with receiver_server() as (receiver, hook_url):
        request = json.dumps({"initial_data": {}, "webhook_url": hook_url}).encode()
        # 32 submitters, round-robin over the instances, each with a connection of its own (11, 11 and 10
        # with three instances: 32 // 3 for each held a submitter in three waiting for a connection)
        async with _clients(bases, 32) as clients:

            async def submitter(client: RawClient, count: int) -> None:
                for _ in range(count):
                    await _submit(client, request)

            # warm-up: a few jobs through every instance
            receiver.target = 4 * len(bases)
            await asyncio.gather(*(submitter(c, 4) for c in clients))
            await asyncio.wait_for(receiver.all_done.wait(), 60)
            receiver.finished.clear()
            receiver.all_done.clear()
            receiver.target = n_jobs
            submitters = [clients[i % len(clients)] for i in range(32)]
            counts = [n_jobs // 32 + (1 if i < n_jobs % 32 else 0) for i in range(32)]
            measure.start()
            t0 = time.perf_counter()
            await asyncio.gather(*(submitter(c, n) for c, n in zip(submitters, counts, strict=True)))
            submitted = time.perf_counter() - t0
            await asyncio.wait_for(receiver.all_done.wait(), 300)
            elapsed = max(receiver.finished.values()) - t0
            cpu = measure.stop(n_jobs)
    if receiver.bad:
        raise RuntimeError(f"jobs did not finish: {receiver.bad[:3]}")
    return {"jobs_s": n_jobs / elapsed, "submit_s": submitted, "elapsed_s": elapsed, **cpu}


async def drive_polling(
    bases: list[str], n_jobs: int, server_pids: list[int], worker_pids: list[int]
) -> dict[str, float]:
    """The server benchmark's poll client over the instances: :data:`POLL_LANES` jobs in flight, each
    submitted to an instance (lane ``k`` to instance ``k mod n``, as a client pinned by a load balancer)
    and polled there with ``GET /api/v1/jobs/{id}`` every :data:`POLL_S` until it ends."""
    measure = _Measure(server_pids, worker_pids)
    body = json.dumps({"initial_data": {}}).encode()
    async with _clients(bases, POLL_LANES) as clients:
        left = [4 * len(bases)]

        async def lane(client: RawClient) -> None:
            while left[0] > 0:
                left[0] -= 1
                await _poll_until_done(client, await _submit(client, body), POLL_S)

        lanes = [clients[k % len(clients)] for k in range(POLL_LANES)]
        await asyncio.gather(*(lane(c) for c in lanes))  # warm-up: a few jobs through every instance
        left[0] = n_jobs
        measure.start()
        t0 = time.perf_counter()
        await asyncio.gather(*(lane(c) for c in lanes))
        elapsed = time.perf_counter() - t0
        cpu = measure.stop(n_jobs)
    return {"jobs_s": n_jobs / elapsed, "elapsed_s": elapsed, **cpu}


async def run(
    dsn: str,
    instances: int,
    workers: int,
    capacity: int,
    n_jobs: int,
    statements: bool = False,
    sdk: str = "podium",
    client: str = "webhook",
    on_first: bool = False,
) -> dict[str, float]:
    """One run on ``dsn``: a PostgreSQL server (a schema of the run's own) or a Redis server (a key prefix of
    the run's own), removed after. ``sdk``: the workers (``podium``: ``podium.worker``; ``avtomatika-worker``:
    unmodified avtomatika-worker 1.0b20, as the server benchmark runs it); ``client``: ``webhook``
    (:func:`drive_many`) or ``poll`` (:func:`drive_polling`); ``on_first``: the workers and the client talk to
    the first instance only (the others run, idle)."""
    from tests.conformance.conftest import drop_pg_schema

    from bench.bench_engine import drop_prefix

    if dsn.startswith("redis"):
        sep = "&" if "?" in dsn else "?"
        url = f"{dsn}{sep}prefix=podium-bench-inst-{uuid.uuid4().hex[:8]}"
        cleanup = drop_prefix(url)
    else:
        sep = "&" if "?" in dsn else "?"
        url = f"{dsn}{sep}schema=podium_bench_inst_{uuid.uuid4().hex[:8]}"
        cleanup = drop_pg_schema(url)
    env = {
        **os.environ,
        "CLIENT_TOKEN": CLIENT_TOKEN,
        "GLOBAL_WORKER_TOKEN": WORKER_TOKEN,
        "LOG_LEVEL": "ERROR",
    }
    env["PYTHONPATH"] = str(ROOT / "src")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "blueprints").mkdir()
            (Path(tmp) / "blueprints" / "bench_blueprint.py").write_text(PODIUM_BLUEPRINT)
            (Path(tmp) / "worker.py").write_text(PODIUM_WORKER)
            bases = []
            try:
                counts = [f"{tmp}/statements-{k}.json" for k in range(instances)]
                for k in range(instances):  # one after the other: the first creates the schema
                    port = free_port()
                    runner = ["-m", "bench.pgcount", counts[k]] if statements else ["-m", "podium"]
                    cmd = [sys.executable, *runner, "serve", "--port", str(port)]
                    cmd += ["--blueprints", f"{tmp}/blueprints", "--storage", url]
                    procs.append(
                        subprocess.Popen(
                            cmd,
                            env={
                                **env,
                                "INSTANCE_ID": f"i{k}",
                                "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
                            },
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                    )
                    bases.append(f"http://127.0.0.1:{port}")
                    await wait_http(f"{bases[-1]}/_public/health")
                servers = list(procs)
                argv = [sys.executable, f"{tmp}/worker.py"]
                if sdk == "avtomatika-worker":
                    python = await asyncio.to_thread(peer_python, "avtomatika-worker", AVTOMATIKA_WORKER_REQ)
                    (Path(tmp) / "avt_worker.py").write_text(AVTOMATIKA_WORKER)
                    argv = [str(python), f"{tmp}/avt_worker.py"]
                for i in range(workers):
                    wenv = {
                        **env,
                        "WORKER_ID": f"pw{i}",
                        "ORCHESTRATOR_URL": bases[0 if on_first else i % instances],
                        "WORKER_TOKEN": WORKER_TOKEN,
                        "CAPACITY": str(capacity),
                        "MAX_CONCURRENT_TASKS": str(capacity),
                        "TASK_FILES_DIR": f"{tmp}/payloads",
                    }
                    procs.append(subprocess.Popen(argv, env=wenv))
                await wait_workers(bases[0], workers)
                drive = drive_polling if client == "poll" else drive_many
                figures = await drive(
                    bases[:1] if on_first else bases,
                    n_jobs,
                    [p.pid for p in servers],
                    [p.pid for p in procs[len(servers) :]],
                )
                if statements:
                    await asyncio.sleep(1.0)  # the counters' last dump (every 0.5 s)
                    figures.update(_statements(counts, n_jobs + 4 * instances))
                return figures
            finally:
                stop_all(procs)
    finally:
        await cleanup


def _medians(ratios: dict[str, float]) -> dict[str, float]:
    """Each comparison's median over its rounds (``name#k`` -> ``name``): on a shared machine one round's ratio
    moves with the machine's load, the median much less."""
    by_name: dict[str, list[float]] = {}
    for name, ratio in ratios.items():
        by_name.setdefault(name.rpartition("#")[0] or name, []).append(ratio)
    return {name: statistics.median(values) for name, values in by_name.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small run (smoke test)")
    parser.add_argument("--instances", default="1,3", help="instance counts to compare (comma-separated)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--capacity", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=None, help="jobs per run (default 3000; --quick 200)")
    parser.add_argument("--dsn", default=DSN)
    parser.add_argument("--redis", default=None, help="also run on this Redis server (redis://host:port/db)")
    parser.add_argument("--statements", action="store_true", help="count PostgreSQL statements per job")
    parser.add_argument("--rounds", type=int, default=1, help="run every configuration this many times")
    parser.add_argument("--no-postgres", action="store_true", help="run on Redis only (with --redis)")
    parser.add_argument(
        "--sdk",
        choices=("podium", "avtomatika-worker"),
        default="podium",
        help="the workers: podium.worker, or unmodified avtomatika-worker 1.0b20 (its own venv)",
    )
    parser.add_argument(
        "--client",
        choices=("webhook", "poll"),
        default="webhook",
        help="job_finished webhooks, or the server benchmark's poll client (64 in flight, a GET every 5 ms)",
    )
    parser.add_argument(
        "--on-first",
        action="store_true",
        help="workers and client on the first instance only, the others idle (what running them costs)",
    )
    args = parser.parse_args(argv)
    if args.no_postgres and not args.redis:
        parser.error("--no-postgres needs --redis")
    n_jobs = args.jobs or (200 if args.quick else 3000)
    results: dict[str, dict[str, float]] = {}
    counts = [int(x) for x in args.instances.split(",")]
    stores = {
        **({} if args.no_postgres else {"podium-postgres": args.dsn}),
        **({"podium-redis": args.redis} if args.redis else {}),
    }
    ratios: dict[str, float] = {}
    for r in range(args.rounds):
        tag = f"#{r + 1}" if args.rounds > 1 else ""
        for store, dsn in stores.items():
            for n in counts:
                results[f"{store}/x{n}{tag}"] = asyncio.run(
                    run(
                        dsn,
                        n,
                        args.workers,
                        args.capacity,
                        n_jobs,
                        args.statements,
                        args.sdk,
                        args.client,
                        args.on_first,
                    )
                )
            first = results[f"{store}/x{counts[0]}{tag}"]["jobs_s"]
            for n in counts[1:]:
                ratios[f"{store}/x{n}_over_{store}/x{counts[0]}{tag}"] = (
                    results[f"{store}/x{n}{tag}"]["jobs_s"] / first
                )
    keys = ["jobs_s", "cpu_ms_servers", "cpu_ms_workers", "cpu_ms_driver", "cpu_ms_postgres", "cpu_ms_total"]
    keys += ["cpu_ms_pg_own"]
    if args.statements:
        keys += ["stmt_total", "stmt_reads", "stmt_commits", "stmt_takes"]
        keys += ["redis_round_trips", "redis_messages", "redis_takes"]
    keys += ["ctx_switches_servers", "machine_busy"]
    rows = [
        [
            name,
            *(
                "-"
                if k not in r
                else f"{r[k]:.0f}"
                if k == "jobs_s"
                else f"{r[k]:.3f}"
                if k.startswith("cpu")
                else f"{r[k]:.2f}"
                for k in keys
            ),
        ]
        for name, r in results.items()
    ]
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.2f}x jobs/s")
    medians = _medians(ratios) if args.rounds > 1 else {}
    for name, median in medians.items():
        print(f"{name}: median {median:.2f}x jobs/s over {args.rounds} rounds")
    report(
        "instances",
        ["config", *keys],
        rows,
        {
            "jobs": n_jobs,
            "workers": args.workers,
            "capacity": args.capacity,
            "sdk": args.sdk,
            "client": args.client,
            "on_first": args.on_first,
            "rows": results,
            "ratios": ratios,
            "ratio_medians": medians,
        },
    )
    return results


if __name__ == "__main__":
    main()
