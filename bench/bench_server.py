"""Server benchmark: what an Avtomatika user runs first, side by side on the same machine.

Blueprint ``start -> dispatch_task(noop) -> finished``; workers answer at once. Every figure is labelled
with its configuration: **worker SDK** / **server and store** / **client**.

- Worker SDK: ``avtomatika-worker`` 1.0b20, unmodified, in its own venv (``bench/peervenv.py``; 1.0b20 is
  the release on the server's rxon 1.0b17, see interop-notes), or podium's own ``podium.worker``. ``W``
  processes (default 4) with the SDK's default timings, ``MAX_CONCURRENT_TASKS``/``capacity`` ``C``.
- Server and store: Avtomatika 1.0b30 on ``MemoryStorage`` (``engine.start()``, rate limiting off: its
  default caps a worker at 60 polls a minute), ``podium serve`` on the memory store, ``podium serve`` on
  durable SQLite (``synchronous=FULL``, the ``serve`` default), and a **stub**: a raw RXON server
  (``bench/rxon_stub.py``) that answers polls and results at once and keeps no jobs, which shows how fast
  the worker SDK itself goes here (the limit of any server it talks to); and the same stub keeping jobs in
  a dict for the poll client (``stub-jobs``): the limit of the whole setup, workers and polling client
  included, with a server that does nothing else.
- Client (this process, raw HTTP/1.1 over asyncio streams, the same for every server): ``poll`` submits
  (``POST /api/v1/jobs/bench``) and polls ``GET /api/v1/jobs/{id}`` until the job ends; ``webhook``
  submits with a ``webhook_url`` and waits for ``job_finished`` on a loopback receiver.

Figures per configuration: p50/p99 of single jobs one after another (the poll client polls every 0.5 ms:
back-to-back polls would take a core from the workers on a 2-core machine; submit -> seen finished), throughput (jobs/s) of ``N`` jobs with ``F`` in flight (a new job submitted as
each ends; the poll client polls each job every ``--poll-ms``), and CPU time per job of the throughput run
for the server process, the worker processes (summed) and this client (``/proc/<pid>/stat``,
``getrusage``): on a 2-core machine running 6 processes, CPU per job bounds throughput. Prints a table,
one JSON line, then the ratios.

    python bench/bench_server.py [--quick] [--only NAME,...] [--workers 4] [--capacity 8] [--jobs N]
                                 [--in-flight 64] [--poll-ms 5] [--quotas] [--rounds N]

``--only`` picks systems: ``stub``, ``stub-jobs`` (the stub keeping jobs for the poll client: the limit of
the whole setup), ``avtomatika``, ``podium-memory``, ``podium-sqlite`` (``FULL``: every
call durable before it returns), ``podium-sqlite-normal`` (``?synchronous=NORMAL``: survives a process
crash, not a power cut), all with avtomatika-worker, and ``podium-sdk`` (podium's worker SDK on memory and
on SQLite). The fsync time of this disk is measured too: it bounds what durable SQLite can do. ``--quotas`` gives
podium's client a plan with (unreachable) quotas, so every submission pays for its quota count.

``--rounds N`` runs the chosen systems N times over, one after another in each round (this shared machine's
speed drifts by a third between minutes: a ratio compares runs a minute apart, and one round's ratio can be
off by that much); the table shows every round, each figure and ratio in the JSON line is the median over the
rounds, and the ratio lines list each round's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.common import report  # noqa: E402
from bench.peervenv import AVTOMATIKA, AVTOMATIKA_WORKER, peer_python  # noqa: E402
from bench.rawhttp import RawClient, receiver_server  # noqa: E402

AVTOMATIKA_REQ = AVTOMATIKA
AVTOMATIKA_REDIS_REQ = ["avtomatika[redis]==1.0b30"]
AVTOMATIKA_WORKER_REQ = AVTOMATIKA_WORKER
CLIENT_TOKEN, WORKER_TOKEN = "bench-client-token", "bench-worker-token"
SUBMIT_PATH = "/api/v1/jobs/bench"
TERMINAL = {"finished", "failed", "quarantined", "cancelled"}

PODIUM_BLUEPRINT = """
from podium.engine import Blueprint

bp = Blueprint("bench", api_endpoint="/jobs/bench", api_version="v1")

@bp.handler(is_start=True)
async def start(actions):
    actions.dispatch_task("noop", {}, transitions={"success": "finished"})

@bp.handler(is_end=True)
async def finished():
    pass
"""

PODIUM_WORKER = """
import logging, os
logging.disable(logging.WARNING)
from podium.worker import Worker

worker = Worker(capacity=int(os.environ["CAPACITY"]))

@worker.task("noop")
async def noop(params):
    return {}

worker.run()
"""

AVTOMATIKA_SERVER = """
import asyncio, logging, os
logging.disable(logging.CRITICAL)
from avtomatika import Blueprint, OrchestratorEngine
from avtomatika.config import Config
from avtomatika.storage import MemoryStorage

bp = Blueprint("bench", api_endpoint="/jobs/bench", api_version="v1")

@bp.handler(is_start=True)
async def start(actions):
    actions.dispatch_task(task_type="noop", params={}, transitions={"success": "finished"})

@bp.handler(is_end=True)
async def finished():
    pass

def storage():
    url = os.environ.get("REDIS_URL")  # Avtomatika's production store, in a database of the run's own
    if not url:
        return MemoryStorage()
    import redis.asyncio as aioredis
    from avtomatika.storage import RedisStorage

    return RedisStorage(aioredis.Redis.from_url(url))

async def main():
    config = Config()
    config.API_HOST, config.API_PORT = "127.0.0.1", int(os.environ["PORT"])
    config.RATE_LIMITING_ENABLED = False
    engine = OrchestratorEngine(storage(), config)
    engine.register_blueprint(bp)
    await engine.start()
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await engine.stop()

asyncio.run(main())
"""

AVTOMATIKA_WORKER = """
import logging
logging.disable(logging.WARNING)
from avtomatika_worker import Worker

worker = Worker(worker_type="bench")

@worker.skill("noop")
async def noop(params):
    return {"status": "success", "data": {}}

worker.run()
"""

BENCH_CLIENTS = f"""
[plans.bench]
requests_per_minute = 1000000000
monthly_attempts = 1000000000

[bench]
token = "{CLIENT_TOKEN}"
plan = "bench"
"""


@dataclass(frozen=True)
class Options:
    workers: int
    capacity: int
    n_latency: int
    n_jobs: int
    in_flight: int
    poll_s: float
    quotas: bool
    latency_poll_s: float = 0.0005
    job_timeout_s: float | None = None
    """The poll client gives up on a job not ended after this long, counts it lost, and takes throughput
    over the jobs that ended (for a server that loses jobs: Avtomatika on Redis drops some results)."""


def fsync_ms(directory: str, n: int = 100) -> tuple[float, float]:
    """p50 and p90 of one 4 KiB write + fsync in ``directory`` (what a durable commit waits for)."""
    times = []
    path = Path(directory) / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        for _ in range(n):
            os.write(fd, b"x" * 4096)
            t0 = time.perf_counter()
            os.fsync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(times) * 1e3, percentile(times, 90) * 1e3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


# --- processes and their CPU ----------------------------------------------------------------------

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int | None = None, *, children: bool = False) -> float:
    """CPU time (user + system) a process has used so far: this one, or ``pid``; with ``children``, its
    child processes' too (running or reaped: ``podium serve``'s SQLite sync helper is part of the server)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = sum(int(f) for f in fields[11 : 15 if children else 13]) * _TICK_S
    if children:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                with contextlib.suppress(OSError):  # it ended meanwhile
                    total += cpu_s(int(child), children=True)
    return total


@dataclass
class Processes:
    """The server process and the worker processes of one configuration."""

    server: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]

    def cpu(self) -> dict[str, float]:
        return {
            "server": cpu_s(self.server.pid, children=True),
            "workers": sum(cpu_s(p.pid) for p in self.workers),
            "client": cpu_s(),
        }


def spawn(argv: list[str], env: dict[str, str], *, quiet: bool = True) -> subprocess.Popen[bytes]:
    out = subprocess.DEVNULL if quiet else None
    return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=out)


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


async def wait_workers(base: str, count: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(headers={"X-Client-Token": CLIENT_TOKEN}) as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                workers = (await http.get(f"{base}/api/v1/workers")).json()
                if isinstance(workers, list) and len(workers) >= count:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{count} workers did not register with {base}")


def base_env() -> dict[str, str]:
    return {
        **os.environ,
        "CLIENT_TOKEN": CLIENT_TOKEN,
        "GLOBAL_WORKER_TOKEN": WORKER_TOKEN,
        "LOG_LEVEL": "ERROR",
    }


async def start_workers(sdk: str, base: str, opts: Options, tmp: Path) -> list[subprocess.Popen[bytes]]:
    """``opts.workers`` processes of ``sdk`` (``avtomatika-worker`` or ``podium``) serving ``noop``."""
    env = {**base_env(), "ORCHESTRATOR_URL": base, "WORKER_TOKEN": WORKER_TOKEN}
    if sdk == "podium":
        (tmp / "podium_worker.py").write_text(PODIUM_WORKER)
        argv, extra = [sys.executable, str(tmp / "podium_worker.py")], {"CAPACITY": str(opts.capacity)}
    else:
        python = await asyncio.to_thread(peer_python, "avtomatika-worker", AVTOMATIKA_WORKER_REQ)
        (tmp / "avt_worker.py").write_text(AVTOMATIKA_WORKER)
        argv = [str(python), str(tmp / "avt_worker.py")]
        extra = {"MAX_CONCURRENT_TASKS": str(opts.capacity), "TASK_FILES_DIR": str(tmp / "payloads")}
    return [spawn(argv, {**env, **extra, "WORKER_ID": f"w{i}"}) for i in range(opts.workers)]


@contextlib.asynccontextmanager
async def system(
    server: str, sdk: str, opts: Options, store_url: str | None = None
) -> AsyncIterator[tuple[str, Processes]]:
    """Start a server (``avtomatika``, ``podium-memory``, ``podium-sqlite``, ``stub``) and its workers;
    yield the base URL and the processes once every worker registered. ``store_url``: podium's store
    (``podium serve --storage``), or the ``redis://host:port/db`` Avtomatika's ``RedisStorage`` uses
    (the caller's to create and clean up)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = base_env()
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            if server.startswith("avtomatika"):
                reqs = AVTOMATIKA_REDIS_REQ if store_url else AVTOMATIKA_REQ
                python = await asyncio.to_thread(peer_python, "avtomatika", reqs)
                (tmp / "server.py").write_text(AVTOMATIKA_SERVER)
                extra = {"PORT": str(port), **({"REDIS_URL": store_url} if store_url else {})}
                procs.append(spawn([str(python), str(tmp / "server.py")], {**env, **extra}))
                await wait_http(f"{base}/_public/status")
            elif server in ("stub", "stub-jobs"):
                procs.append(spawn([sys.executable, "-m", "bench.rxon_stub", str(port)], env))
                await wait_http(f"{base}/_public/status")
            else:
                if opts.quotas:
                    (tmp / "clients.toml").write_text(BENCH_CLIENTS)
                    del env["CLIENT_TOKEN"]
                    env["CLIENTS_CONFIG_PATH"] = str(tmp / "clients.toml")
                (tmp / "blueprints").mkdir()
                (tmp / "blueprints" / "bench_blueprint.py").write_text(PODIUM_BLUEPRINT)
                store = (
                    store_url
                    or {
                        "podium-memory": "memory://",
                        "podium-sqlite": f"sqlite:///{tmp}/podium.db",
                        "podium-sqlite-normal": f"sqlite:///{tmp}/podium.db?synchronous=NORMAL",
                    }[server]
                )
                argv = [sys.executable, "-m", "podium", "serve", "--port", str(port)]
                argv += ["--blueprints", str(tmp / "blueprints"), "--storage", store]
                procs.append(spawn(argv, env))
                await wait_http(f"{base}/_public/health")
            procs += await start_workers(sdk, base, opts, tmp)
            await wait_workers(base, opts.workers)
            yield base, Processes(procs[0], procs[1:])
        finally:
            stop_all(procs)


# --- the clients ----------------------------------------------------------------------------------


async def _submit(http: RawClient, body: bytes) -> str:
    status, payload = await http.post(SUBMIT_PATH, body)
    if status != 202:
        raise RuntimeError(f"submit failed: {status} {payload[:300]!r}")
    return str(json.loads(payload)["job_id"])


SERVER_ERRORS = [0]
"""Server errors the lenient poll client (``Options.job_timeout_s``) met and retried, in this process."""


async def _poll_until_done(
    http: RawClient, job_id: str, pause_s: float, timeout_s: float | None = None
) -> bool:
    """Poll until the job ends (``True``), or ``False`` once ``timeout_s`` passed without its end. With a
    ``timeout_s`` (a server that loses jobs) a server error answering a poll, or a dropped connection, is
    counted (:data:`SERVER_ERRORS`) and the poll tried again."""
    path = f"/api/v1/jobs/{job_id}"
    deadline = None if timeout_s is None else time.perf_counter() + timeout_s
    while True:
        if deadline is not None and time.perf_counter() > deadline:
            return False
        if pause_s:
            await asyncio.sleep(pause_s)
        try:
            status, payload = await http.get(path)
        except (OSError, asyncio.IncompleteReadError):
            if deadline is None:
                raise
            status, payload = 599, b"connection dropped"
        if status >= 500 and deadline is not None:
            SERVER_ERRORS[0] += 1
            continue
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {payload[:300]!r}")
        state = json.loads(payload)["status"]
        if state in TERMINAL:
            if state != "finished":
                raise RuntimeError(f"job {job_id} ended {state}: {payload[:300]!r}")
            return True


async def _closed_loop(n_jobs: int, in_flight: int, one_job: Callable[[], Any]) -> float:
    """Run ``n_jobs`` jobs, ``in_flight`` at a time (a new one as each ends); the seconds it took."""
    left = [n_jobs]

    async def lane() -> None:
        while left[0] > 0:
            left[0] -= 1
            await one_job()

    t0 = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(in_flight)))
    return time.perf_counter() - t0


def _figures(
    lat: list[float], n_jobs: int, elapsed: float, before: dict[str, float], after: dict[str, float]
) -> dict[str, float]:
    cpu = {f"cpu_ms_{k}": (after[k] - before[k]) * 1e3 / n_jobs for k in before}
    return {
        "p50_ms": statistics.median(lat) * 1e3,
        "p99_ms": percentile(lat, 99) * 1e3,
        "jobs_s": n_jobs / elapsed,
        **cpu,
        "cpu_ms_total": sum(cpu.values()),
    }


async def drive_poll(base: str, procs: Processes, opts: Options) -> dict[str, float]:
    request = json.dumps({"initial_data": {}}).encode()
    timeout_s = opts.job_timeout_s
    lost = 0
    async with RawClient(base, {"X-Client-Token": CLIENT_TOKEN}, opts.in_flight) as http:
        lat = []
        for _ in range(opts.n_latency):
            t0 = time.perf_counter()
            if await _poll_until_done(http, await _submit(http, request), opts.latency_poll_s, timeout_s):
                lat.append(time.perf_counter() - t0)
            else:
                lost += 1
        last = [0.0]

        async def one_job() -> None:
            nonlocal lost
            if await _poll_until_done(http, await _submit(http, request), opts.poll_s, timeout_s):
                last[0] = time.perf_counter()
            else:
                lost += 1

        gets0 = http.requests
        before = procs.cpu()
        started = time.perf_counter()
        elapsed = await _closed_loop(opts.n_jobs, opts.in_flight, one_job)
        after = procs.cpu()
        gets = (http.requests - gets0) / opts.n_jobs - 1
    if timeout_s is None:
        return {**_figures(lat, opts.n_jobs, elapsed, before, after), "gets_per_job": gets}
    done = opts.n_jobs - (lost - (opts.n_latency - len(lat)))  # throughput run's jobs that ended
    figures = _figures(lat, done, last[0] - started, before, after)
    return {
        **figures,
        "gets_per_job": gets,
        "lost_jobs": float(lost),
        "server_errors": float(SERVER_ERRORS[0]),
    }


async def drive_webhook(base: str, procs: Processes, opts: Options) -> dict[str, float]:
    async with receiver_server() as (receiver, hook_url):
        request = json.dumps({"initial_data": {}, "webhook_url": hook_url}).encode()
        async with RawClient(base, {"X-Client-Token": CLIENT_TOKEN}, opts.in_flight) as http:
            lat = []
            for _ in range(opts.n_latency):
                t0 = time.perf_counter()
                lat.append(await receiver.wait_for(await _submit(http, request), 30) - t0)

            async def one_job() -> None:
                await receiver.wait_for(await _submit(http, request), 60)

            before = procs.cpu()
            elapsed = await _closed_loop(opts.n_jobs, opts.in_flight, one_job)
            after = procs.cpu()
    if receiver.bad:
        raise RuntimeError(f"jobs did not finish: {receiver.bad[:3]}")
    return _figures(lat, opts.n_jobs, elapsed, before, after)


async def drive_stub(base: str, procs: Processes, opts: Options) -> dict[str, float]:
    """Hand ``n_jobs`` tasks to the workers as fast as they poll; the rate at which results come back."""
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        await http.get("/arm", params={"n": 50})  # warm up
        await http.get("/wait")
        lat = []  # one task at a time: from handing it out to its result (the SDK's own round trip)
        for _ in range(opts.n_latency):
            await http.get("/arm", params={"n": 1})
            lat.append((await http.get("/wait")).json()["elapsed_s"])
        before = procs.cpu()
        await http.get("/arm", params={"n": opts.n_jobs})
        elapsed = (await http.get("/wait")).json()["elapsed_s"]
        after = procs.cpu()
    cpu = {f"cpu_ms_{k}": (after[k] - before[k]) * 1e3 / opts.n_jobs for k in before}
    cpu.pop("cpu_ms_client")
    return {
        "p50_ms": statistics.median(lat) * 1e3,
        "p99_ms": percentile(lat, 99) * 1e3,
        "jobs_s": opts.n_jobs / elapsed,
        **cpu,
        "cpu_ms_total": sum(cpu.values()),
    }


# --- the runs -------------------------------------------------------------------------------------

SYSTEMS = {
    # name: (server, worker SDK, clients)
    "stub": ("stub", "avtomatika-worker", ["none"]),
    "stub-jobs": ("stub-jobs", "avtomatika-worker", ["poll"]),
    "avtomatika": ("avtomatika", "avtomatika-worker", ["poll", "webhook"]),
    "podium-memory": ("podium-memory", "avtomatika-worker", ["poll", "webhook"]),
    "podium-sqlite": ("podium-sqlite", "avtomatika-worker", ["poll", "webhook"]),
    "podium-sqlite-normal": ("podium-sqlite-normal", "avtomatika-worker", ["poll", "webhook"]),
    "podium-sdk": ("podium-sdk", "podium", ["webhook"]),
}
STORE = {
    "stub": "stub (no jobs)",
    "stub-jobs": "stub (jobs in a dict)",
    "avtomatika": "Avtomatika memory",
    "podium-memory": "podium memory",
    "podium-sqlite": "podium SQLite FULL",
    "podium-sqlite-normal": "podium SQLite NORMAL",
}
DRIVERS = {"poll": drive_poll, "webhook": drive_webhook, "none": drive_stub}


def label(server: str, sdk: str, client: str) -> str:
    """The JSON key prefix of one configuration: ``<sdk>_<server>_<client>``."""
    short = {"avtomatika-worker": "avtw", "podium": "podw"}[sdk]
    return f"{short}_{server.replace('-', '_')}_{client}"


async def run(names: list[str], opts: Options) -> dict[str, tuple[tuple[str, str, str], dict[str, float]]]:
    results: dict[str, tuple[tuple[str, str, str], dict[str, float]]] = {}
    for name in names:
        server, sdk, clients = SYSTEMS[name]
        servers = ["podium-memory", "podium-sqlite"] if server == "podium-sdk" else [server]
        for srv in servers:
            async with system(srv, sdk, opts) as (base, procs):
                for client in clients:
                    figures = await DRIVERS[client](base, procs, opts)
                    results[label(srv, sdk, client)] = ((sdk, STORE[srv], client), figures)
    return results


def ratios(results: dict[str, tuple[Any, dict[str, float]]]) -> dict[str, float]:
    """podium against Avtomatika (same SDK, same client), and against the stub's limit."""
    out: dict[str, float] = {}
    figures = {k: v[1] for k, v in results.items()}
    for client in ("poll", "webhook"):
        peer = figures.get(f"avtw_avtomatika_{client}")
        for store in ("memory", "sqlite", "sqlite_normal"):
            mine = figures.get(f"avtw_podium_{store}_{client}")
            if peer and mine:
                out[f"{client}_{store}_throughput_vs_avtomatika"] = mine["jobs_s"] / peer["jobs_s"]
                out[f"{client}_{store}_p50_vs_avtomatika"] = mine["p50_ms"] / peer["p50_ms"]
                out[f"{client}_{store}_cpu_vs_avtomatika"] = mine["cpu_ms_total"] / peer["cpu_ms_total"]
    peer = figures.get("avtw_avtomatika_poll")
    for stub, key in (("avtw_stub_none", "stub_limit"), ("avtw_stub_jobs_poll", "stub_jobs_limit")):
        if peer and stub in figures:
            out[f"{key}_vs_avtomatika_poll"] = figures[stub]["jobs_s"] / peer["jobs_s"]
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=",".join(SYSTEMS), help=f"systems: {','.join(SYSTEMS)}")
    parser.add_argument("--podium-only", action="store_true", help="no Avtomatika, no stub")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--capacity", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=None, help="jobs in each throughput run")
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--poll-ms", type=float, default=5.0, help="the poll client's pause between GETs")
    parser.add_argument("--quotas", action="store_true", help="podium's client has (unreachable) quotas")
    parser.add_argument(
        "--rounds", type=int, default=1, help="run every system this many times, alternately; medians"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    n_latency, n_jobs = (20, 300) if args.quick else (100, 1000)
    opts = Options(
        workers=args.workers,
        capacity=args.capacity,
        n_latency=n_latency,
        n_jobs=args.jobs or n_jobs,
        in_flight=args.in_flight,
        poll_s=args.poll_ms / 1e3,
        quotas=args.quotas,
    )
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    if args.podium_only:
        names = [n for n in names if n.startswith("podium")]
    unknown = set(names) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; known: {', '.join(SYSTEMS)}")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as probe:
        fsync_p50, fsync_p90 = fsync_ms(probe)
    by_round = [asyncio.run(run(names, opts)) for _ in range(args.rounds)]
    rows = [
        [
            sdk,
            store,
            client if args.rounds == 1 else f"{client} #{k}",
            r.get("p50_ms", float("nan")),
            r.get("p99_ms", float("nan")),
            r["jobs_s"],
            r["cpu_ms_server"],
            r["cpu_ms_workers"],
            r.get("cpu_ms_client", float("nan")),
            r["cpu_ms_total"],
        ]
        for k, results in enumerate(by_round, 1)
        for (sdk, store, client), r in results.values()
    ]
    figures: dict[str, Any] = {
        "workers": opts.workers,
        "capacity": opts.capacity,
        "n_jobs": opts.n_jobs,
        "n_latency": opts.n_latency,
        "in_flight": opts.in_flight,
        "poll_ms": args.poll_ms,
        "loadavg_1m_before": load_before,
        "fsync_p50_ms": fsync_p50,
        "fsync_p90_ms": fsync_p90,
        # each avtomatika-worker sends one result at a time: with every result acknowledged after an fsync,
        # W workers cannot finish more than W / fsync jobs per second, whatever the server does
        "durable_ack_bound_jobs_s": opts.workers / (fsync_p50 / 1e3),
        # each figure: its median over the rounds (the value itself with one round)
        **{
            f"{key}_{k}": statistics.median(rr[key][1][k] for rr in by_round)
            for key, (_, r) in by_round[0].items()
            for k in r
        },
    }
    per_round = [ratios(results) for results in by_round]
    for key in per_round[0]:
        figures[key] = statistics.median(rr[key] for rr in per_round)
        if args.rounds > 1:
            figures[f"{key}_rounds"] = [rr[key] for rr in per_round]
    # on a machine this small every process competes for the same cores: with the CPU each job costs the
    # server, the workers and the client together, no run can exceed cores / that cost
    cores = os.cpu_count() or 1
    bounds = {
        key[: -len("_cpu_ms_total")]: cores * 1e3 / figures[key]
        for key in list(figures)
        if key.endswith("_poll_cpu_ms_total") and figures[key] > 0
    }
    for name, bound in bounds.items():
        figures[f"{name}_cpu_bound_jobs_s"] = bound
    report(
        "server",
        [
            "worker SDK",
            "server/store",
            "client",
            "p50 ms",
            "p99 ms",
            "jobs/s",
            "cpu ms/job server",
            "workers",
            "client",
            "total",
        ],
        rows,
        figures,
    )
    for client in ("poll", "webhook"):
        for store in ("memory", "sqlite", "sqlite_normal"):
            key = f"{client}_{store}_throughput_vs_avtomatika"
            if key in figures:
                each = figures.get(f"{key}_rounds")
                rounds = f" (median of rounds {', '.join(f'{v:.2f}x' for v in each)})" if each else ""
                print(
                    f"avtomatika-worker, {client} client: podium {store} / Avtomatika memory: throughput "
                    f"{figures[key]:.2f}x{rounds}, p50 {figures[f'{client}_{store}_p50_vs_avtomatika']:.2f}x, "
                    f"CPU per job {figures[f'{client}_{store}_cpu_vs_avtomatika']:.2f}x"
                )
    for name, bound in bounds.items():
        jobs = figures[f"{name}_jobs_s"]
        print(
            f"{name}: CPU per job of server, workers and client together "
            f"{figures[f'{name}_cpu_ms_total']:.2f} ms: on {cores} cores at most {bound:,.0f} jobs/s; "
            f"measured {jobs:,.0f} ({jobs / bound:.0%} of that)"
        )
    print(
        f"fsync on this disk: p50 {fsync_p50:.2f} ms, p90 {fsync_p90:.2f} ms; with every result acknowledged "
        f"after an fsync, {opts.workers} avtomatika-workers (one result in flight each) finish at most "
        f"{figures['durable_ack_bound_jobs_s']:,.0f} jobs/s, and a job (submit, result: two fsyncs) takes at "
        f"least {2 * fsync_p50:.1f} ms"
    )
    if "stub_jobs_limit_vs_avtomatika_poll" in figures:
        print(
            f"setup limit with the poll client (avtomatika-worker and the polling client against a stub that "
            f"keeps jobs in a dict): {figures['avtw_stub_jobs_poll_jobs_s']:,.0f} jobs/s = "
            f"{figures['stub_jobs_limit_vs_avtomatika_poll']:.2f}x Avtomatika's jobs/s (poll client)"
        )
    if "stub_limit_vs_avtomatika_poll" in figures:
        print(
            f"stub limit (avtomatika-worker against a server that does nothing): "
            f"{figures['avtw_stub_none_jobs_s']:,.0f} tasks/s = "
            f"{figures['stub_limit_vs_avtomatika_poll']:.2f}x Avtomatika's jobs/s (poll client); one task's "
            f"round trip through the SDK: p50 {figures['avtw_stub_none_p50_ms']:.2f} ms = "
            f"{figures['avtw_stub_none_p50_ms'] / figures['avtw_avtomatika_poll_p50_ms']:.2f}x Avtomatika's p50"
        )
    return figures


if __name__ == "__main__":
    main()
