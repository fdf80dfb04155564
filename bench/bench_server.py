"""Server benchmark: the engine benchmark again, over HTTP, with remote workers in separate processes.

Blueprint ``start -> dispatch_task(noop) -> finished``; workers answer at once. For each system:

- one server process: ``podium serve`` (memory store) / Avtomatika 1.0b30 (``engine.start()``, MemoryStorage,
  rate limiting off: its default caps a worker at 60 polls a minute);
- ``W`` worker processes: ``podium.worker`` / unmodified ``avtomatika-worker`` 1.0b20 (own venvs), each
  running up to ``C`` tasks at once, with the SDKs' default timings;
- this process is the client: it submits jobs over HTTP (``POST /api/v1/jobs/bench`` with a
  ``webhook_url``) and counts the ``job_finished`` webhooks on a loopback receiver, so both systems are
  measured the same way with no status polling.

The driver speaks just enough HTTP/1.1 over asyncio streams (keep-alive, 32 submitting connections, a
stream-server receiver), the same for both systems, so that it does not cap either: httpx plus a
uvicorn receiver in this process held Avtomatika to ~136 jobs/s.

Figures: latency p50/p99 of single jobs one after another (submit -> webhook), throughput (jobs/s) of
``N`` jobs submitted together, and the CPU time per job of the throughput run for the server process,
the worker processes (summed) and this driver (``/proc/<pid>/stat``, ``getrusage``): on a 2-core
machine running 6 processes, CPU per job is what bounds throughput. Prints a table, then one JSON line,
then the ratios.

    python bench/bench_server.py [--quick] [--podium-only] [--workers 4] [--capacity 8] [--jobs N]
                                 [--quotas] [--ratelimits] [--storage redis://127.0.0.1:6379/0]

``--quotas`` gives podium's client a plan with (unreachable) ``requests_per_minute`` and
``monthly_attempts`` quotas, so every submission pays for its quota count in the store. ``--ratelimits`` turns
podium's rate limiter on (``RATE_LIMITING_ENABLED``) with unreachable limits: every request pays for its count.
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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.common import report  # noqa: E402
from bench.peervenv import peer_python  # noqa: E402

AVTOMATIKA_REQ = ["avtomatika==1.0b30"]
AVTOMATIKA_WORKER_REQ = ["avtomatika-worker==1.0b20"]
CLIENT_TOKEN, WORKER_TOKEN = "bench-client-token", "bench-worker-token"

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

async def main():
    config = Config()
    config.API_HOST, config.API_PORT = "127.0.0.1", int(os.environ["PORT"])
    config.RATE_LIMITING_ENABLED = False
    engine = OrchestratorEngine(MemoryStorage(), config)
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


# --- a cheap HTTP/1.1 driver, the same for both systems -------------------------------------------
# The client and the webhook receiver speak just enough HTTP/1.1 (keep-alive, Content-Length, chunked
# bodies on the receiving side) over asyncio streams, so that the driver costs little CPU per job and
# does not cap either system on these 2-core machines.


async def _read_message(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """Read one HTTP/1.1 message: (start line, lower-cased headers, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    else:
        body = b""
    return lines[0], headers, body


class RawClient:
    """Keep-alive HTTP/1.1 connections to one server; ``post`` borrows one for a request."""

    def __init__(self, base: str, headers: dict[str, str], connections: int) -> None:
        host, _, port = base.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.head = f"Host: {host}:{port}\r\n{extra}Content-Type: application/json\r\n"
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        self.connections = connections
        self.opened: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> RawClient:
        for _ in range(self.connections):
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self.opened.append(writer)
            self.idle.put_nowait((reader, writer))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self.opened:
            writer.close()

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        reader, writer = await self.idle.get()
        try:
            writer.write(
                f"POST {path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body
            )
            status_line, _, payload = await _read_message(reader)
        finally:
            self.idle.put_nowait((reader, writer))
        return int(status_line.split(b" ", 2)[1]), payload


class Receiver:
    """Counts job_finished webhooks; lets the client wait for one job or for a number of them."""

    _OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

    def __init__(self) -> None:
        self.finished: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Future[None]] = {}
        self.target = 0
        self.all_done = asyncio.Event()
        self.bad: list[dict[str, Any]] = []

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                _, _, raw = await _read_message(reader)
                body = json.loads(raw)
                writer.write(self._OK)
                self.hook(body)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def hook(self, body: dict[str, Any]) -> None:
        if body.get("event") != "job_finished":
            self.bad.append(body)
        job_id = body["job_id"]
        self.finished[job_id] = time.perf_counter()
        fut = self.waiters.pop(job_id, None)
        if fut is not None and not fut.done():
            fut.set_result(None)
        if self.target and len(self.finished) >= self.target:
            self.all_done.set()


@contextlib.asynccontextmanager
async def receiver_server() -> AsyncIterator[tuple[Receiver, str]]:
    receiver = Receiver()
    server = await asyncio.start_server(receiver.serve_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield receiver, f"http://127.0.0.1:{port}/hook"
    finally:
        server.close()


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


_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int | None = None) -> float:
    """CPU time (user + system) a process has used so far: this one, or ``pid``."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_S


def cpu_snapshot(server: int, workers: list[int]) -> dict[str, float]:
    return {
        "server": cpu_s(server),
        "workers": sum(cpu_s(pid) for pid in workers),
        "driver": cpu_s(),
    }


async def drive(
    base: str, n_latency: int, n_jobs: int, server_pid: int, worker_pids: list[int]
) -> dict[str, float]:
    async with receiver_server() as (receiver, hook_url):
        request = json.dumps({"initial_data": {}, "webhook_url": hook_url}).encode()
        async with RawClient(base, {"X-Client-Token": CLIENT_TOKEN}, 32) as http:

            async def submit() -> str:
                status, payload = await http.post("/api/v1/jobs/bench", request)
                if status != 202:
                    raise RuntimeError(f"submit failed: {status} {payload[:300]!r}")
                return str(json.loads(payload)["job_id"])

            lat = []
            for _ in range(n_latency):
                t0 = time.perf_counter()
                job_id = await submit()
                if job_id not in receiver.finished:
                    fut = asyncio.get_running_loop().create_future()
                    receiver.waiters[job_id] = fut
                    await asyncio.wait_for(fut, 30)
                lat.append(receiver.finished[job_id] - t0)

            receiver.finished.clear()
            receiver.target = n_jobs
            before = cpu_snapshot(server_pid, worker_pids)
            t0 = time.perf_counter()
            # 32 submitters, one keep-alive connection each
            per = [n_jobs // 32 + (1 if i < n_jobs % 32 else 0) for i in range(32)]

            async def submitter(count: int) -> None:
                for _ in range(count):
                    await submit()

            await asyncio.gather(*(submitter(c) for c in per))
            submitted = time.perf_counter() - t0
            try:
                await asyncio.wait_for(receiver.all_done.wait(), 120)
            except TimeoutError:
                raise RuntimeError(
                    f"only {len(receiver.finished)} of {n_jobs} jobs reported finished within 120 s"
                ) from None
            elapsed = max(receiver.finished.values()) - t0
            after = cpu_snapshot(server_pid, worker_pids)
    if receiver.bad:
        raise RuntimeError(f"jobs did not finish: {receiver.bad[:3]}")
    cpu = {f"cpu_ms_{k}": (after[k] - before[k]) * 1e3 / n_jobs for k in before}
    cpu["cpu_ms_total"] = sum(cpu.values())
    return {
        "p50_ms": statistics.median(lat) * 1e3,
        "p99_ms": percentile(lat, 99) * 1e3,
        "jobs_s": n_jobs / elapsed,
        "submit_s": n_jobs / submitted,
        **cpu,
    }


BENCH_CLIENTS = f"""
[plans.bench]
requests_per_minute = 1000000000
monthly_attempts = 1000000000

[bench]
token = "{CLIENT_TOKEN}"
plan = "bench"
"""


async def run_podium(
    workers: int,
    capacity: int,
    n_latency: int,
    n_jobs: int,
    *,
    quotas: bool = False,
    ratelimits: bool = False,
    storage: str = "memory://",
) -> dict[str, float]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CLIENT_TOKEN": CLIENT_TOKEN,
        "GLOBAL_WORKER_TOKEN": WORKER_TOKEN,
        "LOG_LEVEL": "ERROR",
    }
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if ratelimits:
            limits = {"RATE_LIMIT_LIMIT", "RATE_LIMIT_POLL_LIMIT", "RATE_LIMIT_HEARTBEAT_LIMIT"}
            env |= {"RATE_LIMITING_ENABLED": "true", **dict.fromkeys(limits, "1000000000")}
        if quotas:
            (Path(tmp) / "clients.toml").write_text(BENCH_CLIENTS)
            del env["CLIENT_TOKEN"]
            env["CLIENTS_CONFIG_PATH"] = f"{tmp}/clients.toml"
        (Path(tmp) / "blueprints").mkdir()
        (Path(tmp) / "blueprints" / "bench_blueprint.py").write_text(PODIUM_BLUEPRINT)
        (Path(tmp) / "worker.py").write_text(PODIUM_WORKER)
        try:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "podium",
                        "serve",
                        "--port",
                        str(port),
                        "--blueprints",
                        f"{tmp}/blueprints",
                        "--storage",
                        storage,  # memory:// by default: like for like with Avtomatika's MemoryStorage
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            await wait_http(f"{base}/_public/health")
            for i in range(workers):
                wenv = {
                    **env,
                    "WORKER_ID": f"pw{i}",
                    "ORCHESTRATOR_URL": base,
                    "WORKER_TOKEN": WORKER_TOKEN,
                    "CAPACITY": str(capacity),
                }
                procs.append(subprocess.Popen([sys.executable, f"{tmp}/worker.py"], env=wenv))
            await wait_workers(base, workers)
            return await drive(base, n_latency, n_jobs, procs[0].pid, [p.pid for p in procs[1:]])
        finally:
            stop_all(procs)


async def run_avtomatika(workers: int, capacity: int, n_latency: int, n_jobs: int) -> dict[str, float]:
    server_py = await asyncio.to_thread(peer_python, "avtomatika", AVTOMATIKA_REQ)
    worker_py = await asyncio.to_thread(peer_python, "avtomatika-worker", AVTOMATIKA_WORKER_REQ)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CLIENT_TOKEN": CLIENT_TOKEN,
        "GLOBAL_WORKER_TOKEN": WORKER_TOKEN,
        "PORT": str(port),
        "LOG_LEVEL": "ERROR",
    }
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "server.py").write_text(AVTOMATIKA_SERVER)
        (Path(tmp) / "worker.py").write_text(AVTOMATIKA_WORKER)
        try:
            procs.append(
                subprocess.Popen(
                    [str(server_py), f"{tmp}/server.py"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            await wait_http(f"{base}/_public/status")
            for i in range(workers):
                wenv = {
                    **env,
                    "WORKER_ID": f"aw{i}",
                    "ORCHESTRATOR_URL": base,
                    "WORKER_TOKEN": WORKER_TOKEN,
                    "MAX_CONCURRENT_TASKS": str(capacity),
                    "TASK_FILES_DIR": f"{tmp}/payloads",
                }
                procs.append(
                    subprocess.Popen(
                        [str(worker_py), f"{tmp}/worker.py"],
                        env=wenv,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            await wait_workers(base, workers)
            return await drive(base, n_latency, n_jobs, procs[0].pid, [p.pid for p in procs[1:]])
        finally:
            stop_all(procs)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--podium-only", action="store_true")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--capacity", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=None, help="jobs in the throughput run")
    parser.add_argument("--quotas", action="store_true", help="podium's client has (unreachable) quotas")
    parser.add_argument(
        "--ratelimits", action="store_true", help="podium's rate limiter on (unreachable limits)"
    )
    parser.add_argument(
        "--storage",
        default="memory://",
        help="podium's store URL (a redis:// one gets a key prefix of its own, deleted after the run)",
    )
    args = parser.parse_args(argv)
    n_latency, n_jobs = (10, 300) if args.quick else (100, 2000)
    n_jobs = args.jobs or n_jobs
    results: dict[str, dict[str, float]] = {}
    storage = args.storage
    if storage.startswith("redis") and "prefix=" not in storage:
        from podium.ids import new_ulid_str

        storage += f"{'&' if '?' in storage else '?'}prefix=podium-bench-{new_ulid_str()}"
    try:
        results["podium"] = asyncio.run(
            run_podium(
                args.workers,
                args.capacity,
                n_latency,
                n_jobs,
                quotas=args.quotas,
                ratelimits=args.ratelimits,
                storage=storage,
            )
        )
    finally:
        if storage.startswith("redis"):
            from bench.bench_engine import drop_prefix

            asyncio.run(drop_prefix(storage))
    if not args.podium_only:
        results["avtomatika"] = asyncio.run(run_avtomatika(args.workers, args.capacity, n_latency, n_jobs))
    rows = [
        [
            name,
            r["p50_ms"],
            r["p99_ms"],
            r["jobs_s"],
            r["submit_s"],
            r["cpu_ms_server"],
            r["cpu_ms_workers"],
            r["cpu_ms_driver"],
            r["cpu_ms_total"],
        ]
        for name, r in results.items()
    ]
    figures: dict[str, Any] = {
        "workers": args.workers,
        "capacity": args.capacity,
        "n_jobs": n_jobs,
        "n_latency": n_latency,
        **{f"{name}_{k}": v for name, r in results.items() for k, v in r.items()},
    }
    if "avtomatika" in results:
        p, a = results["podium"], results["avtomatika"]
        figures["throughput_podium_vs_avtomatika"] = p["jobs_s"] / a["jobs_s"]
        figures["p50_avtomatika_over_podium"] = a["p50_ms"] / p["p50_ms"]
        figures["cpu_per_job_avtomatika_over_podium"] = a["cpu_ms_total"] / p["cpu_ms_total"]
    report(
        "server",
        [
            "system",
            "p50 ms",
            "p99 ms",
            "jobs/s",
            "submits/s",
            "cpu ms/job server",
            "workers",
            "driver",
            "total",
        ],
        rows,
        figures,
    )
    if "avtomatika" in results:
        print(
            f"podium/avtomatika: throughput {figures['throughput_podium_vs_avtomatika']:.2f}x, "
            f"CPU per job {1 / figures['cpu_per_job_avtomatika_over_podium']:.2f}x, "
            f"p50 {results['podium']['p50_ms'] / results['avtomatika']['p50_ms']:.2f}x"
        )
    return figures


if __name__ == "__main__":
    main()
