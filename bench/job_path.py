"""Server cost of one whole job as ``bench_server``'s poll client and ``avtomatika-worker`` drive it, without
sockets: instructions per job.

A ``podium serve``-like server (``OrchestratorEngine(SQLiteStorage(path))`` on durable SQLite,
``synchronous=FULL``: the writer and syncer threads run too; ``create_app``; the collector tuned as ``podium
serve`` tunes it) gets, per job, the requests ``bench_server.py --only podium-sqlite`` sends, byte for byte as
its clients send them, fed to podium's HTTP protocol (:func:`podium.server._protocol.http_protocol`) over
in-memory transports (one per connection: the client's, the worker's long poll, the worker's results):

1. the worker's ``GET /_worker/workers/w0/tasks/next?timeout=30.0&available_skills=noop&hot_skills=``
   (avtomatika-worker 1.0b20's poll, aiohttp's headers), left waiting until the engine holds it
   (``--queued``: sent after the submission instead, so that it finds the task waiting);
2. the client's ``POST /api/v1/jobs/bench`` (``{"initial_data": {}}``), answered 202; the poll answers;
3. ``N - 1`` status polls ``GET /api/v1/jobs/{id}`` (the bench's mean is 16 per job, the last one after the
   result: here ``N - 1`` before the result and then polls until the job shows ``finished``);
4. the worker's ``POST /_worker/tasks/result`` (the SDK's ``TaskResult``: sorted keys, ``status`` left out as
   its default, ``costs``, HMAC-signed with the worker token), answered once durable;
5. every ``--heartbeat-every`` jobs (default 140: four workers' one heartbeat per 2 s each, at ~285 jobs/s),
   the SDK's ``PATCH /_worker/workers/w0`` heartbeat.

Each request is answered before the next is sent (one job at a time: no group commit across jobs, which
the bench's 64 jobs in flight get). For instructions (steady on a shared machine) run it under cachegrind
twice and take the difference::

    PYTHONHASHSEED=0 valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \\
        python bench/job_path.py 300
    ... python bench/job_path.py 100    # (I refs(300) - I refs(100)) / 200 per job

    python bench/job_path.py [N_JOBS] [--polls 16] [--queued] [--heartbeat-every 140]

Without valgrind it prints CPU time per job (``time.process_time``: every thread of the process).
``--phases``: the main thread's CPU time (``time.thread_time``) by phase of the job: what the server does
between a request and its answer (and what it does after an answer, until the next request, goes to that
next phase). ``--profile FILE``: cProfile's statistics of the measured jobs, to FILE (``python -m pstats FILE``). A request
kind's share: vary it (``--polls 1`` against ``--polls 16``: the status poll; ``--heartbeat-every 1``).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import hmac
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "src", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench.poll_path import MemoryTransport, bench_blueprint  # noqa: E402
from podium.engine import Config, OrchestratorEngine  # noqa: E402
from podium.engine.storage import SQLiteStorage  # noqa: E402
from podium.server import ServerSettings  # noqa: E402
from podium.server._protocol import http_protocol  # noqa: E402
from podium.server.app import create_app  # noqa: E402

CLIENT_TOKEN = "bench-client-token"
WORKER_TOKEN = "bench-worker-token"
WORKER_ID = "w0"
HOST = "127.0.0.1:8080"


class _Transport(MemoryTransport):
    """Keeps what is written; :meth:`answer` waits for the next response."""

    def __init__(self) -> None:
        super().__init__()
        self.waiter: asyncio.Future[None] | None = None

    def write(self, data: bytes) -> None:
        self.data.append(bytes(data))
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def answer(self) -> tuple[int, bytes]:
        while not self.data:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        data, self.data = b"".join(self.data), []
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body


# --- the requests, as the bench's RawClient and avtomatika-worker 1.0b20 (aiohttp) write them ---------


def client_get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nX-Client-Token: {CLIENT_TOKEN}\r\n\r\n".encode()


def client_post(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nX-Client-Token: {CLIENT_TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


_WORKER_HEADERS = (
    f"Host: {HOST}\r\nX-Worker-Token: {WORKER_TOKEN}\r\nX-Worker-ID: {WORKER_ID}\r\nX-RXON-Version: 1.0b17\r\n"
    "Accept: */*\r\nAccept-Encoding: gzip, deflate\r\nUser-Agent: Python/3.11 aiohttp/3.13.2\r\n"
)


def worker_request(method: str, target: str, payload: Any = None) -> bytes:
    if payload is None:
        return f"{method} {target} HTTP/1.1\r\n{_WORKER_HEADERS}\r\n".encode()
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    head = f"{method} {target} HTTP/1.1\r\n{_WORKER_HEADERS}Content-Length: {len(body)}\r\nContent-Type: application/json\r\n\r\n"
    return head.encode() + body


def signed(payload: dict[str, Any]) -> dict[str, Any]:
    """rxon 1.0b17's ``sign_payload``: HMAC-SHA256 of the sorted compact JSON, ``security`` left out."""
    message = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    signature = hmac.new(WORKER_TOKEN.encode(), message, hashlib.sha256).hexdigest()
    return {**payload, "security": {"signature": signature, "signer_id": WORKER_ID}}


def registration() -> dict[str, Any]:
    skill = {"name": "noop", "type": "noop"}
    return signed(
        {
            "worker_id": WORKER_ID,
            "worker_type": "bench",
            "supported_skills": [skill],
            "available_skills": ["noop"],
            "capacity": 8,
        }
    )


def heartbeat(current: list[str]) -> dict[str, Any]:
    return signed(
        {
            "worker_id": WORKER_ID,
            "status": "idle",
            "current_tasks": current,
            "available_skills": ["noop"],
            "skills_hash": "0" * 64,
            "timestamp": int(time.time()),
        }
    )


def result(job_id: str, task_id: str) -> dict[str, Any]:
    return signed(
        {
            "costs": {"execution_time_seconds": 0.0001},
            "data": {},
            "job_id": job_id,
            "origin_worker_id": WORKER_ID,
            "task_id": task_id,
            "timestamp": int(time.time()),
            "worker_id": WORKER_ID,
        }
    )


class Driver:
    def __init__(
        self, engine: OrchestratorEngine, app: Any, polls: int, queued: bool, heartbeat_every: int
    ) -> None:
        from uvicorn.config import Config as UvicornConfig
        from uvicorn.server import ServerState

        self.engine, self.polls, self.queued, self.heartbeat_every = engine, polls, queued, heartbeat_every
        config = UvicornConfig(
            app, http=http_protocol(), lifespan="off", access_log=False, proxy_headers=False
        )
        config.load()
        state = ServerState()
        state.default_headers = [(b"date", b"Mon, 07 Dec 2026 00:00:00 GMT"), (b"server", b"uvicorn")]
        self.conns: dict[str, tuple[Any, _Transport]] = {}
        for name in ("client", "poll", "result"):
            transport = _Transport()
            protocol = http_protocol()(config=config, server_state=state, app_state={})
            protocol.connection_made(transport)
            self.conns[name] = (protocol, transport)
        self.parked: asyncio.Future[None] | None = None
        attach = engine.dispatch.attach

        def attached(worker: Any) -> None:
            attach(worker)
            if self.parked is not None and not self.parked.done():
                self.parked.set_result(None)

        engine.dispatch.attach = attached  # type: ignore[method-assign]
        self.jobs = 0
        self.status_gets = 0
        self.phases: dict[str, float] | None = None  # --phases: main-thread CPU by phase of the job
        self.last = 0.0

    async def send(self, conn: str, data: bytes) -> tuple[int, bytes]:
        protocol, transport = self.conns[conn]
        protocol.data_received(data)
        status, body = await transport.answer()
        if status >= 300:
            raise RuntimeError(f"{conn}: {status} {body[:300]!r}")
        return status, body

    async def register(self) -> None:
        await self.send("result", worker_request("POST", "/_worker/workers/register", registration()))

    def mark(self, phase: str) -> None:
        """The main thread's CPU since the last mark goes to ``phase`` (``--phases``)."""
        if self.phases is not None:
            now = time.thread_time()
            self.phases[phase] = self.phases.get(phase, 0.0) + now - self.last
            self.last = now

    async def one_job(self) -> None:
        self.mark("between jobs")
        fetch = worker_request(
            "GET", f"/_worker/workers/{WORKER_ID}/tasks/next?timeout=30.0&available_skills=noop&hot_skills="
        )
        poll_protocol, poll_transport = self.conns["poll"]
        submit = client_post("/api/v1/jobs/bench", b'{"initial_data": {}}')
        if self.queued:
            _, body = await self.send("client", submit)
            poll_protocol.data_received(fetch)
        else:
            self.parked = asyncio.get_running_loop().create_future()
            poll_protocol.data_received(fetch)
            await self.parked
            _, body = await self.send("client", submit)
        job_id = json.loads(body)["job_id"]
        status, task = await poll_transport.answer()
        if status != 200:
            raise RuntimeError(f"poll: {status} {task[:300]!r}")
        task_id = json.loads(task)["task_id"]
        self.mark("submit + task fetch")
        get = client_get(f"/api/v1/jobs/{job_id}")
        for _ in range(self.polls - 1):
            await self.send("client", get)
        self.status_gets += self.polls - 1
        self.mark("status GETs")
        body = worker_request("POST", "/_worker/tasks/result", result(job_id, task_id))
        self.mark("driver: result body")
        _, answer = await self.send("result", body)
        if b'"accepted"' not in answer:
            raise RuntimeError(f"result not accepted: {answer!r}")
        self.mark("result")
        while True:
            self.status_gets += 1
            _, body = await self.send("client", get)
            if b'"finished"' in body:  # (the driver's own instructions count too: no JSON decoding here)
                break
        self.mark("status GETs")
        self.jobs += 1
        if self.heartbeat_every and self.jobs % self.heartbeat_every == 0:
            await self.send("result", worker_request("PATCH", f"/_worker/workers/{WORKER_ID}", heartbeat([])))
            self.mark("heartbeat")


async def measure(
    n: int, polls: int, queued: bool, heartbeat_every: int, profile: str | None = None, phases: bool = False
) -> tuple[float, float]:
    """(CPU seconds per job, status GETs per job) over ``n`` jobs."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = OrchestratorEngine(SQLiteStorage(Path(tmp) / "podium.db"), Config(), serve_http=False)
        engine.register_blueprint(bench_blueprint())
        settings = ServerSettings(client_token=CLIENT_TOKEN, global_worker_token=WORKER_TOKEN)
        app: Any = create_app(engine, settings)
        async with app.router.lifespan_context(app):
            driver = Driver(engine, app, polls, queued, heartbeat_every)
            await driver.register()
            for _ in range(20):  # warm up
                await driver.one_job()
            gc.collect()
            gc.freeze()
            gc.set_threshold(50_000, 20, 100)  # as podium serve tunes it (podium.cli.serve._tune_gc)
            driver.jobs = driver.status_gets = 0
            profiler = None
            if profile:
                import cProfile

                profiler = cProfile.Profile(time.thread_time)
                profiler.enable()
            if phases:
                driver.phases, driver.last = {}, time.thread_time()
            started = time.process_time()
            for _ in range(n):
                await driver.one_job()
            elapsed = time.process_time() - started
            if driver.phases is not None:
                driver.mark("between jobs")
                total = sum(driver.phases.values())
                for phase, cpu in sorted(driver.phases.items(), key=lambda x: -x[1]):
                    print(f"{phase:>22}: {cpu / n * 1e6:7.1f} us/job main-thread CPU ({cpu / total:.0%})")
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(profile)
            return elapsed / n, driver.status_gets / n


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("jobs", nargs="?", type=int, default=1000)
    parser.add_argument("--polls", type=int, default=16, help="status GETs per job (the bench's mean)")
    parser.add_argument("--queued", action="store_true", help="the poll finds the task waiting")
    parser.add_argument("--heartbeat-every", type=int, default=140, help="a heartbeat every N jobs (0: none)")
    parser.add_argument("--profile", help="cProfile's statistics of the measured jobs, to this file")
    parser.add_argument("--phases", action="store_true", help="main-thread CPU by phase of the job")
    args = parser.parse_args()
    run = measure(args.jobs, args.polls, args.queued, args.heartbeat_every, args.profile, args.phases)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        per_job, gets = asyncio.run(run)
    else:
        per_job, gets = uvloop.run(run)
    print(f"{per_job * 1e6:.0f} us CPU per job ({args.jobs} jobs, {gets:.1f} status GETs per job)")


if __name__ == "__main__":
    main()
