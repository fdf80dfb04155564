"""Engine benchmark: podium.engine (memory, sqlite) against Avtomatika (MemoryStorage) in its own venv.

Blueprint ``start -> dispatch_task(noop) -> end`` with in-process workers that answer at once:
- latency: end-to-end p50/p99 of single jobs run one after another;
- throughput: jobs/s for N jobs submitted together, with 1 and 4 workers.

Avtomatika runs in its own virtual environment (``bench.peervenv``) as a subprocess: its engine is started
as documented and its workers call the worker service in-process (get_next_task / process_task_result,
what its HTTP worker routes call), so neither side pays for HTTP. podium's in-process workers are its
documented ``InProcessWorker`` (a task is leased straight to a worker with a free slot in the write that
dispatches it); both sides run the same blueprint and store every transition (podium-sqlite durably,
``synchronous=FULL`` by default). Avtomatika has no completion hook, so its harness polls job state
(documented in its script). Every configuration of either system runs in a fresh process of its own, so
no run pays for the garbage of the one before. Prints a table, the ratios and the issue's targets, then
one JSON line.

    python bench/bench_engine.py [--quick] [--podium-only] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.peervenv import AVTOMATIKA  # noqa: E402

AVTOMATIKA_REQ = AVTOMATIKA


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


# --- podium -----------------------------------------------------------------------------------------


async def podium_run(
    store_kind: str, n_latency: int, n_jobs: int, workers: int, sqlite_sync: str = "FULL"
) -> dict[str, float]:
    from podium.engine.storage import MemoryStorage, SQLiteStorage

    with tempfile.TemporaryDirectory() as tmp:
        store = (
            MemoryStorage()
            if store_kind == "memory"
            else redis_storage(store_kind)
            if store_kind.startswith("redis")
            else SQLiteStorage(Path(tmp) / "bench.db", synchronous=sqlite_sync)
        )
        figures = await run_on_store(store, n_latency, n_jobs, workers)
        if store_kind.startswith("redis"):
            await drop_prefix(store_kind)
    return figures


async def run_on_store(store: Any, n_latency: int, n_jobs: int, workers: int) -> dict[str, float]:
    """The engine benchmark's work on ``store``: blueprint ``start -> dispatch_task(noop) -> end``, ``workers``
    in-process workers answering at once; p50/p99 of ``n_latency`` single jobs one after another, then the
    throughput of ``n_jobs`` created together and waited for together."""
    from podium.engine import ActionFactory, Blueprint, Config, InProcessWorker, OrchestratorEngine

    bp = Blueprint("bench")

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        actions.dispatch_task("noop", {}, transitions={"success": "end"})

    @bp.handler(is_end=True)
    async def end() -> None: ...

    engine = OrchestratorEngine(store, Config(EXECUTOR_MAX_CONCURRENT_JOBS=100), serve_http=False)
    engine.register_blueprint(bp)
    for i in range(workers):
        w = InProcessWorker(f"w{i}", capacity=50)
        w.add_skill("noop", lambda: {"status": "success", "data": {}})
        engine.add_worker(w)
    async with engine:
        lat: list[float] = []
        for _ in range(n_latency):
            t0 = time.perf_counter()
            job = await engine.wait_for_job(await engine.create_job("bench"))
            lat.append(time.perf_counter() - t0)
            assert job.status == "finished"
        t0 = time.perf_counter()
        ids = await asyncio.gather(*(engine.create_job("bench") for _ in range(n_jobs)))
        views = await asyncio.gather(*(engine.wait_for_job(j) for j in ids))
        elapsed = time.perf_counter() - t0
        assert all(v.status == "finished" for v in views)
    return {
        "p50_ms": percentile(lat, 50) * 1e3,
        "p99_ms": percentile(lat, 99) * 1e3,
        "jobs_s": n_jobs / elapsed,
    }


def redis_storage(url: str) -> Any:
    """podium on Redis: ``url`` carries the run's own key prefix (deleted after the run)."""
    from podium.engine.storage import RedisStorage

    return RedisStorage(url)


async def drop_prefix(url: str) -> None:
    import redis.asyncio as aioredis

    from podium.store.redis import redis_settings

    server, prefix = redis_settings(url)
    client = aioredis.Redis.from_url(server)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.unlink(*keys[i : i + 1000])
    finally:
        await client.aclose()


def podium_run_isolated(
    store_kind: str, n_latency: int, n_jobs: int, workers: int, sqlite_sync: str = "FULL"
) -> dict[str, float]:
    """:func:`podium_run` in a fresh interpreter, as each Avtomatika run is: a run in the benchmark's own
    process would start with the previous runs' garbage still to collect (a full collection of it landed
    in the next run's timed batch, about 5% of it), which Avtomatika's fresh processes never carry."""
    args = [store_kind, str(n_latency), str(n_jobs), str(workers), sqlite_sync]
    out = subprocess.run(
        [sys.executable, __file__, "--run-podium", *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    if out.returncode != 0:
        raise RuntimeError(f"podium run failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# --- avtomatika (runs in its own venv) -------------------------------------------------------------

AVTOMATIKA_SCRIPT = r"""
import asyncio, json, logging, socket, sys, time, uuid
logging.disable(logging.CRITICAL)
from avtomatika import Blueprint, OrchestratorEngine
from avtomatika.config import Config
from avtomatika.storage import MemoryStorage

n_latency, n_jobs, workers = (int(a) for a in sys.argv[1:4])

def pct(values, p):
    o = sorted(values)
    return o[min(len(o) - 1, max(0, round(p / 100 * (len(o) - 1))))]

bp = Blueprint("bench", api_endpoint="/jobs/bench")

@bp.handler(is_start=True)
async def start(actions):
    actions.dispatch_task(task_type="noop", params={}, transitions={"success": "finished"})

@bp.handler(is_end=True)
async def finished():
    pass

async def main():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    config = Config()
    config.API_HOST, config.API_PORT = "127.0.0.1", port
    config.RATE_LIMITING_ENABLED = False
    config.WORKER_POLL_TIMEOUT_SECONDS = 1
    config.GLOBAL_WORKER_TOKEN = ""  # no signatures: the in-process loopback workers are trusted
    engine = OrchestratorEngine(MemoryStorage(), config)
    engine.register_blueprint(bp)
    await engine.start()
    ws = engine.worker_service
    stop = False

    async def worker(wid):
        await ws.register_worker({"worker_id": wid, "worker_type": "cpu", "supported_skills": [{"name": "noop"}],
                                  "capabilities": {"hostname": "bench"}, "timestamp": int(time.time())}, wid)
        while not stop:
            task = await ws.get_next_task(wid)
            if not task:
                continue
            await ws.process_task_result({"job_id": task["job_id"], "task_id": task["task_id"], "worker_id": wid,
                                          "status": "success", "data": {}, "timestamp": int(time.time()),
                                          "nonce": uuid.uuid4().hex}, wid)

    wtasks = [asyncio.create_task(worker(f"w{i}")) for i in range(workers)]
    await asyncio.sleep(0.2)

    # Avtomatika has no in-process completion hook: poll the job state (every 0.1 ms for single jobs,
    # and one sweep per millisecond over all jobs for the batch), which adds at most that much.
    terminal = ("finished", "failed", "quarantined", "cancelled")

    async def wait_done(job_id):
        while True:
            st = await engine.storage.get_job_state(job_id)
            if st and st.get("status") in terminal:
                return st
            await asyncio.sleep(0.0001)

    async def wait_all(ids):
        remaining, states = set(ids), []
        while remaining:
            for j in list(remaining):
                st = await engine.storage.get_job_state(j)
                if st and st.get("status") in terminal:
                    remaining.discard(j)
                    states.append(st)
            if remaining:
                await asyncio.sleep(0.001)
        return states

    lat = []
    for _ in range(n_latency):
        t0 = time.perf_counter()
        jid = await engine.create_background_job("bench", {})
        st = await wait_done(jid)
        lat.append(time.perf_counter() - t0)
        assert st["status"] == "finished", st.get("status")
    t0 = time.perf_counter()
    ids = await asyncio.gather(*(engine.create_background_job("bench", {}) for _ in range(n_jobs)))
    states = await wait_all(ids)
    elapsed = time.perf_counter() - t0
    bad = [s.get("status") for s in states if s.get("status") != "finished"]
    stop = True
    for t in wtasks:
        t.cancel()
    await engine.stop()
    print(json.dumps({"p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3, "jobs_s": n_jobs / elapsed,
                      "not_finished": len(bad)}))

asyncio.run(main())
"""


def avtomatika_run(n_latency: int, n_jobs: int, workers: int) -> dict[str, float]:
    from bench.peervenv import peer_python

    python = peer_python("avtomatika", AVTOMATIKA_REQ)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(AVTOMATIKA_SCRIPT)
    out = subprocess.run(
        [str(python), f.name, str(n_latency), str(n_jobs), str(workers)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tempfile.gettempdir(),
    )
    Path(f.name).unlink()
    if out.returncode != 0:
        raise RuntimeError(f"avtomatika run failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# --- main -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--run-podium"]:  # one configuration, in the fresh process podium_run_isolated started
        kind, n_latency, n_jobs, workers, sync = argv[1:6]
        print(json.dumps(asyncio.run(podium_run(kind, int(n_latency), int(n_jobs), int(workers), sync))))
        return {}
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small runs (smoke test)")
    parser.add_argument("--podium-only", action="store_true", help="skip Avtomatika")
    parser.add_argument(
        "--sqlite-sync",
        default="FULL",
        choices=["FULL", "NORMAL"],
        help="sqlite synchronous (NORMAL: crash-safe)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="also run podium on this Redis (redis://host:port/db), under a key prefix of its own",
    )
    args = parser.parse_args(argv)
    n_latency, n_jobs = (20, 200) if args.quick else (200, 2000)

    from podium.ids import new_ulid_str

    systems = ["podium-memory", "podium-sqlite"] + (["podium-redis"] if args.redis else [])
    rows: dict[str, dict[str, float]] = {}
    for system in (*systems, "avtomatika-memory"):
        if system.startswith("avtomatika") and args.podium_only:
            continue
        for workers in (1, 4):
            if system == "podium-redis":
                sep = "&" if "?" in args.redis else "?"
                url = f"{args.redis}{sep}prefix=podium-bench-{new_ulid_str()}"
                r = podium_run_isolated(url, n_latency, n_jobs, workers, args.sqlite_sync)
            elif system.startswith("podium"):
                r = podium_run_isolated(system.split("-")[1], n_latency, n_jobs, workers, args.sqlite_sync)
            else:
                r = avtomatika_run(n_latency, n_jobs, workers)
            rows[f"{system}/{workers}w"] = r

    print(f"{'system':<24}{'p50 ms':>10}{'p99 ms':>10}{'jobs/s':>12}")
    for name, r in rows.items():
        print(f"{name:<24}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['jobs_s']:>12.0f}")

    ratios: dict[str, float] = {}
    targets: dict[str, bool] = {}
    if args.redis:
        for w in (1, 4):
            ratios[f"throughput_podium_redis_vs_sqlite_{w}w"] = (
                rows[f"podium-redis/{w}w"]["jobs_s"] / rows[f"podium-sqlite/{w}w"]["jobs_s"]
            )
    if not args.podium_only:
        for w in (1, 4):
            a = rows[f"avtomatika-memory/{w}w"]
            for kind in ("memory", "sqlite"):
                p = rows[f"podium-{kind}/{w}w"]
                ratios[f"throughput_podium_{kind}_vs_avtomatika_{w}w"] = p["jobs_s"] / a["jobs_s"]
                ratios[f"p50_podium_{kind}_over_avtomatika_{w}w"] = p["p50_ms"] / a["p50_ms"]
        ws = (1, 4)
        targets = {
            "podium-memory throughput >= 5x avtomatika": all(
                ratios[f"throughput_podium_memory_vs_avtomatika_{w}w"] >= 5 for w in ws
            ),
            "podium-memory p50 <= 1/5 of avtomatika": all(
                ratios[f"p50_podium_memory_over_avtomatika_{w}w"] <= 0.2 for w in ws
            ),
            "podium-sqlite throughput > avtomatika-memory": all(
                ratios[f"throughput_podium_sqlite_vs_avtomatika_{w}w"] > 1 for w in ws
            ),
            "podium-sqlite p50 < avtomatika-memory": all(
                ratios[f"p50_podium_sqlite_over_avtomatika_{w}w"] < 1 for w in ws
            ),
        }
    if ratios:
        print()
        for k, v in ratios.items():
            print(f"{k:<52}{v:>8.2f}x")
    if targets:
        print()
        for k, ok in targets.items():
            print(f"{k:<52}{'met' if ok else 'MISSED':>8}")
    report = {
        "bench": "engine",
        "sqlite_synchronous": args.sqlite_sync,
        "n_jobs": n_jobs,
        "n_latency": n_latency,
        "results": rows,
        "ratios": ratios,
        "targets": targets,
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
