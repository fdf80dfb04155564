"""Workcell benchmark: podium's workcell manager against MADSci 0.8.1's, in the same run, on the same nodes.

Workloads (issue 6):
- a 10-step workflow of no-op actions (``robotarm_1.home``): submit-to-completed time, time per step and
  per-step overhead = time per step minus the node's own round trip for one action, measured in the same
  run with each system's own node client (podium's ``NodeClient``, MADSci's ``RestNodeClient``);
- N queued 3-step workflows over 3 nodes (rotated so every node has work): makespan.

Both managers drive the *same* podium simulated nodes (``podium.nodes.sim``, instant actions, MADSci's node
protocol over loopback HTTP, served from this process), so the node cost is equal for both. Each manager
is a separate server process driven over HTTP by its own client:
- podium: ``python -m podium workcell serve`` (SQLite in a temporary folder), driven by
  ``podium.client.WorkcellClient`` (which waits by long-poll);
- MADSci: its real ``WorkcellManager`` plus its ``DataManager`` and ``LocationManager`` as three server
  processes of the MADSci peer venv (``bench/madsci_servers.py``), Redis at 127.0.0.1:6379 in a database
  of its own (the first empty one of 15..8, flushed afterwards), MADSci's ``InMemoryDocumentStorageHandler``
  in place of MongoDB; driven by MADSci's ``WorkcellClient`` in that venv (``bench/madsci_wc_driver.py``),
  which reads the workflow every 50 ms (finer than its own ``await_workflow``'s 2 s).
  MADSci is run twice: at its defaults (``scheduler_update_interval`` 5 s, ``node_update_interval`` 2 s)
  and at a short interval (``--madsci-interval``, default 0.2 s for both). Its engine starts at most one
  step per scheduler tick and waits 1 s before the first result poll of a step, so it is slow; it gets
  fewer queued workflows than podium (the counts are in the output), and makespans are compared per
  workflow.

Then the same comparison on unmodified MADSci 0.8.1 nodes (``madsci.node_module`` at its defaults,
``bench/madsci_noop_node.py``, in the peer venv): podium's per-step time over the node's own floor (create +
start, measured between the runs) on SQLite and on the memory store, a ``hold(1 s)`` workflow, the requests
the node answered per action (its access log), and MADSci's manager on the same nodes; a second report.

Run: ``python bench/bench_workcell.py`` (~10 min; tables, then one JSON line each), ``--quick`` (smaller),
``--podium-only`` (no MADSci venv, no Redis), ``--madsci-nodes-only`` (only the MADSci-node workloads).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "src"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import httpx  # noqa: E402
import yaml  # noqa: E402

from bench.common import flush_redis_db, pick_redis_db, report  # noqa: E402
from bench.peervenv import MADSCI_NODE, MADSCI_WORKCELL  # noqa: E402
from podium.client import WorkcellClient  # noqa: E402
from podium.nodes import NodeClient  # noqa: E402
from podium.nodes.sim import make_sim_nodes, run_sim_nodes  # noqa: E402
from podium.store.sqlite import SQLiteStore  # noqa: E402
from podium.workcell import (  # noqa: E402
    WorkcellDefinition,
    WorkcellEngine,
    WorkcellManagerSettings,
    load_workflow_definition,
)
from podium.workcell.server import serve_asgi  # noqa: E402

HERE = Path(__file__).resolve().parent
NODES = ("robotarm_1", "liquidhandler_1", "platereader_1")
ACTIONS = {"robotarm_1": "home", "liquidhandler_1": "refill_tips", "platereader_1": "read_plate"}
MADSCI_REQUIREMENTS = MADSCI_WORKCELL
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


# --- processes -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server_process(
    argv: list[str],
    url: str,
    log: Path,
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout_s: float = 60,
) -> Iterator[str]:
    """Start a server process; yield its URL once ``GET /health`` answers 200; stop it afterwards."""
    cwd.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        try:
            deadline = time.monotonic() + timeout_s
            with httpx.Client(timeout=2.0) as http:
                while True:
                    if proc.poll() is not None:
                        tail = log.read_text(errors="replace")[-2000:]
                        raise RuntimeError(f"{argv[1]} exited with {proc.returncode}: {tail}")
                    with contextlib.suppress(httpx.HTTPError):
                        if http.get(f"{url}/health").status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"{' '.join(argv[1:3])} did not answer {url}/health in {timeout_s} s"
                        )
                    time.sleep(0.1)  # a process starting up: nothing to wait on but its port
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


# --- podium --------------------------------------------------------------------------------------


async def podium_node_round_trip(url: str, n: int = 30) -> float:
    async with NodeClient(url) as client:
        await client.run_action("home", {})
        t = time.perf_counter()
        for _ in range(n):
            await client.run_action("home", {}, refresh_status=True)
        return (time.perf_counter() - t) / n


def step_times(wf: Any) -> list[float]:
    """Seconds per step of a finished run, from the manager's own timestamps: submission to the first
    step's end, then each step's end to the next one's (so they add up to submit-to-completed, server side)."""
    marks = [wf.submitted_time, *(s.end_time for s in wf.steps)]
    return [(b - a).total_seconds() for a, b in itertools.pairwise(marks)]


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def ten_step_definition() -> dict[str, Any]:
    return {
        "name": "ten",
        "steps": [
            {"name": f"s{i}", "key": f"s{i}", "node": "robotarm_1", "action": "home"} for i in range(10)
        ],
    }


def queued_definitions() -> list[dict[str, Any]]:
    defs = []
    for i in range(3):
        order = NODES[i:] + NODES[:i]
        steps = [{"name": n, "key": f"k{j}", "node": n, "action": ACTIONS[n]} for j, n in enumerate(order)]
        defs.append({"name": f"w{i}", "steps": steps})
    return defs


def run_podium(tmp: Path, urls: dict[str, str], *, ten_reps: int, queued: int) -> dict[str, Any]:
    rtt = asyncio.run(podium_node_round_trip(urls["robotarm_1"]))
    tmp.mkdir(parents=True, exist_ok=True)
    workcell = tmp / "workcell.yaml"
    workcell.write_text(
        yaml.safe_dump(
            {
                "name": "bench",
                "nodes": urls,
                "settings": {"scheduler_update_interval": 5.0, "node_update_interval": 2.0},
            }
        )
    )
    port = free_port()
    argv = [sys.executable, "-m", "podium", "workcell", "serve", "--port", str(port)]
    argv += ["--workcell", str(workcell), "--data-dir", str(tmp / "data")]
    with (
        server_process(argv, f"http://127.0.0.1:{port}", tmp / "podium.log", cwd=tmp) as url,
        WorkcellClient(url, working_directory=tmp) as client,
    ):
        ten_id = client.submit_workflow_definition(ten_step_definition())
        client.submit_workflow(ten_id, show_progress=False, timeout_s=60)  # warm-up
        times: list[float] = []
        steps: list[float] = []
        for _ in range(ten_reps):
            t = time.perf_counter()
            wf = client.submit_workflow(ten_id, show_progress=False, timeout_s=60)
            times.append(time.perf_counter() - t)
            assert wf.status.completed, wf.status
            steps += step_times(wf)
        def_ids = [client.submit_workflow_definition(d) for d in queued_definitions()]
        t = time.perf_counter()
        runs = [client.submit_workflow(def_ids[i % 3], await_completion=False) for i in range(queued)]
        submit_s = time.perf_counter() - t
        results = [
            client.await_workflow(r.workflow_id, raise_on_failed=False, show_progress=False, timeout_s=120)
            for r in runs
        ]
        makespan = time.perf_counter() - t
    return figures(
        rtt=rtt,
        ten_runs=times,
        queued=queued,
        submit_s=submit_s,
        makespan=makespan,
        completed=sum(1 for r in results if r.status.completed),
        steps=steps,
    )


async def run_podium_inprocess(tmp: Path, *, ten_reps: int, queued: int) -> dict[str, Any]:
    """The same workloads on podium's Python API (``WorkcellEngine`` in this process, its own sim nodes
    served from the same event loop): the manager without its HTTP server and client."""
    nodes = {
        k: v for k, v in make_sim_nodes(default_duration_s=0.0, work_dir=tmp / "nodes").items() if k in NODES
    }
    async with contextlib.AsyncExitStack() as stack:
        urls = {}
        for name, node in nodes.items():
            urls[name] = await stack.enter_async_context(serve_asgi(node.create_app()))
            node.info.node_url = urls[name]
        rtt = await podium_node_round_trip(urls["robotarm_1"])
        engine = WorkcellEngine(
            WorkcellDefinition(name="bench", nodes=urls),
            store=SQLiteStore(tmp / "bench.db"),
            data_dir=tmp,
            settings=WorkcellManagerSettings(
                scheduler_update_interval=5.0, node_update_interval=2.0, data_dir=tmp
            ),
            own_store=True,
        )
        ten = load_workflow_definition(ten_step_definition())
        defs = [load_workflow_definition(d) for d in queued_definitions()]
        async with engine:
            await engine.wait_for((await engine.submit(ten)).workflow_id, timeout_s=60)  # warm-up
            times: list[float] = []
            steps: list[float] = []
            for _ in range(ten_reps):
                t = time.perf_counter()
                wf = await engine.wait_for((await engine.submit(ten)).workflow_id, timeout_s=60)
                times.append(time.perf_counter() - t)
                assert wf.status.completed, wf.status.description
                steps += step_times(wf)
            t = time.perf_counter()
            runs = [await engine.submit(defs[i % 3]) for i in range(queued)]
            submit_s = time.perf_counter() - t
            results = [await engine.wait_for(r.workflow_id, timeout_s=120) for r in runs]
            makespan = time.perf_counter() - t
    return figures(
        rtt=rtt,
        ten_runs=times,
        queued=queued,
        submit_s=submit_s,
        makespan=makespan,
        completed=sum(1 for r in results if r.status.completed),
        steps=steps,
    )


def figures(
    *,
    rtt: float,
    ten_runs: list[float],
    queued: int,
    submit_s: float,
    makespan: float,
    completed: int,
    steps: list[float] | None = None,
) -> dict[str, Any]:
    ten = statistics.median(ten_runs)
    per_step: dict[str, Any] = {"per_step_samples": len(steps or [])}
    if steps:
        p50, p99 = percentile(steps, 0.5), percentile(steps, 0.99)
        per_step |= {
            "per_step_p50_ms": p50 * 1000,
            "per_step_p99_ms": p99 * 1000,
            "per_step_overhead_p50_ms": (p50 - rtt) * 1000,
            "per_step_overhead_p99_ms": (p99 - rtt) * 1000,
        }
    return {
        "node_round_trip_ms": rtt * 1000,
        "ten_step_runs": len(ten_runs),
        "ten_step_submit_to_completed_ms": ten * 1000,
        "per_step_ms": ten / 10 * 1000,
        "per_step_overhead_ms": (ten / 10 - rtt) * 1000,
        **per_step,
        "queued_workflows": queued,
        "queued_completed": completed,
        "queued_submit_s": submit_s,
        "makespan_s": makespan,
        "makespan_per_workflow_ms": makespan / queued * 1000 if queued else None,
    }


# --- MADSci --------------------------------------------------------------------------------------


def run_madsci(
    tmp: Path, urls: dict[str, str], configs: list[dict[str, Any]], notes: list[str]
) -> dict[str, dict[str, Any]]:
    """Run MADSci's managers once per config; returns figures per config label (or raises)."""
    from bench.peervenv import peer_python

    python = str(peer_python("madsci-wc", MADSCI_REQUIREMENTS))
    with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=2):
        pass
    db = pick_redis_db()
    redis_cfg = {"redis_host": REDIS_HOST, "redis_port": REDIS_PORT, "redis_db": db}
    notes.append(
        f"MADSci 0.8.1 venv: {python}; Redis {REDIS_HOST}:{REDIS_PORT} database {db} (flushed after)"
    )
    server = str(HERE / "madsci_servers.py")
    data_port, location_port = free_port(), free_port()
    env = {
        "DATA_SERVER_URL": f"http://127.0.0.1:{data_port}",
        "LOCATION_SERVER_URL": f"http://127.0.0.1:{location_port}",
        "PYTHONUNBUFFERED": "1",
    }
    out: dict[str, dict[str, Any]] = {}
    try:
        with contextlib.ExitStack() as stack:
            for role, port in (("data", data_port), ("location", location_port)):
                settings = {"file_storage_path": str(tmp / "datapoints")} if role == "data" else {}
                cfg = json.dumps({**redis_cfg, "settings": settings})
                stack.enter_context(
                    server_process(
                        [python, server, role, str(port), cfg],
                        f"http://127.0.0.1:{port}",
                        tmp / f"madsci-{role}.log",
                        cwd=tmp,
                        env=env,
                    )
                )
            for config in configs:
                label = config["label"]
                settings = {
                    "nodes": urls,
                    "workcells_directory": str(tmp / "workcells"),
                    **config["settings"],
                }
                port = free_port()
                wc_url = f"http://127.0.0.1:{port}"
                with server_process(
                    [python, server, "workcell", str(port), json.dumps({**redis_cfg, "settings": settings})],
                    wc_url,
                    tmp / f"madsci-workcell-{label}.log",
                    cwd=tmp,
                    env=env,
                ):
                    driver = {
                        "workcell_url": wc_url,
                        "node_url": urls["robotarm_1"],
                        "ten_reps": config["ten_reps"],
                        "queued": config["queued"],
                        "round_trip": config.get("round_trip", True),
                    }
                    done = subprocess.run(
                        [python, str(HERE / "madsci_wc_driver.py"), json.dumps(driver)],
                        cwd=tmp,
                        env={**os.environ, **env},
                        capture_output=True,
                        text=True,
                        timeout=config.get("timeout_s", 400),
                    )
                line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
                if line is None:
                    raise RuntimeError(
                        f"MADSci driver ({label}) exited {done.returncode}: {done.stdout[-1500:]} {done.stderr[-1500:]}"
                    )
                res = json.loads(line[len("RESULT ") :])
                out[label] = {
                    "settings": config["settings"],
                    **figures(
                        rtt=res["node_round_trip_s"],
                        ten_runs=res["ten_step_runs_s"],
                        queued=res.get("queued", 0),
                        submit_s=res.get("submit_s", 0.0),
                        makespan=res.get("makespan_s", 0.0),
                        completed=res.get("queued_completed", 0),
                    ),
                }
    finally:
        flush_redis_db(db)
    return out


# --- unmodified MADSci nodes ------------------------------------------------------------------------

MADSCI_NODE_REQUIREMENTS = MADSCI_NODE


@contextlib.contextmanager
def madsci_nodes(tmp: Path, names: tuple[str, ...]) -> Iterator[dict[str, tuple[str, Path]]]:
    """Unmodified MADSci 0.8.1 nodes (``bench/madsci_noop_node.py``, MADSci's default settings) in the peer
    venv, one process each; yields name -> (url, access log). Stopped afterwards."""
    from bench.peervenv import peer_python

    python = str(peer_python("madsci-node", MADSCI_NODE_REQUIREMENTS))
    tmp.mkdir(parents=True, exist_ok=True)
    procs, out = [], {}
    try:
        for name in names:
            port = free_port()
            log = tmp / f"{name}.log"
            with log.open("wb") as fh:
                procs.append(
                    subprocess.Popen(
                        [python, str(HERE / "madsci_noop_node.py"), str(port), name],
                        cwd=tmp,
                        stdout=fh,
                        stderr=subprocess.STDOUT,
                        env={**os.environ, "PYTHONUNBUFFERED": "1"},
                    )
                )
            out[name] = (f"http://127.0.0.1:{port}", log)
        deadline = time.monotonic() + 90
        with httpx.Client(timeout=2.0) as http:
            for url, _ in out.values():
                while True:
                    with contextlib.suppress(httpx.HTTPError, ValueError):
                        if http.get(f"{url}/status").json().get("ready"):
                            break
                    if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                        raise RuntimeError(f"MADSci node at {url} did not come up (logs in {tmp})")
                    time.sleep(0.1)  # a process starting up: nothing to wait on but its port
        yield out
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def node_requests(log: Path) -> dict[str, int]:
    """Requests a MADSci node answered so far, by kind, from its access log."""
    counts: dict[str, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        if '"' not in line or "HTTP/1.1" not in line:
            continue
        method, path = line.split('"')[1].split()[:2]
        parts = path.split("?")[0].strip("/").split("/")
        kind = f"{method} /{parts[0]}" if parts[0] != "action" else f"{method} action/{parts[-1]}"
        if parts[0] == "action" and len(parts) == 2:
            kind = f"{method} action (create)"
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def diff_counts(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


async def madsci_node_floor(url: str, action: str, args: dict[str, Any], n: int) -> tuple[list[float], float]:
    """The node's own floor for one action: create + start (+ result polls) with podium's client, nothing
    else; seconds per action and requests per action."""
    async with NodeClient(url) as client:
        for _ in range(2):
            await client.run_action(action, args, refresh_status=False)
        sent, times = client.requests_sent, []
        for _ in range(n):
            t = time.perf_counter()
            await client.run_action(action, args, refresh_status=False)
            times.append(time.perf_counter() - t)
        return times, (client.requests_sent - sent) / n


def podium_workloads(
    client: WorkcellClient,
    urls: dict[str, str],
    arm_log: Path,
    workloads: tuple[tuple[str, dict[str, Any], int], ...],
    reps: int,
) -> dict[str, Any]:
    """Each workload (label, step, steps) on robotarm_1, ``reps`` times, the node's floor measured before
    each run; figures by label."""
    out: dict[str, Any] = {}
    for label, step, n_steps in workloads:
        definition = {
            "name": label,
            "steps": [{"name": f"s{i}", "node": "robotarm_1", **step} for i in range(n_steps)],
        }
        def_id = client.submit_workflow_definition(definition)
        client.submit_workflow(def_id, show_progress=False, timeout_s=120)  # warm-up, learns
        steps: list[float] = []
        floors: list[float] = []
        floor_requests: list[float] = []
        paired: list[float] = []
        counts: dict[str, int] = {}
        for _ in range(reps):
            times, sent = asyncio.run(
                madsci_node_floor(urls["robotarm_1"], step["action"], step.get("args", {}), 4)
            )
            floors += times
            floor_requests.append(sent)
            before = node_requests(arm_log)
            wf = client.submit_workflow(def_id, show_progress=False, timeout_s=120)
            assert wf.status.completed, wf.status
            for k, v in diff_counts(node_requests(arm_log), before).items():
                counts[k] = counts.get(k, 0) + v
            run = step_times(wf)[1:]  # from one step's end to the next: no submission in it
            steps += run
            # This run's median step over the floor measured just before it (the same machine load).
            paired.append(statistics.median(run) - statistics.median(times))
        actions = reps * n_steps
        floor = statistics.median(floors)
        out[label] = {
            "floor_ms": floor * 1000,
            "floor_requests_per_action": statistics.mean(floor_requests),
            "per_step_p50_ms": percentile(steps, 0.5) * 1000,
            "per_step_p99_ms": percentile(steps, 0.99) * 1000,
            "overhead_p50_ms": (percentile(steps, 0.5) - floor) * 1000,
            "overhead_p99_ms": (percentile(steps, 0.99) - floor) * 1000,
            "overhead_mean_ms": (statistics.mean(steps) - statistics.mean(floors)) * 1000,
            "overhead_paired_median_ms": statistics.median(paired) * 1000,
            "overhead_paired_ms": [p * 1000 for p in paired],
            "requests_per_action": sum(counts.values()) / actions,
            "requests_by_kind_per_action": {k: v / actions for k, v in counts.items()},
            "samples": len(steps),
        }
    return out


def run_podium_on_madsci_nodes(tmp: Path, *, reps: int, hold_s: float, madsci: bool) -> dict[str, Any]:
    """10-step no-op and 5-step ``hold`` workflows on unmodified MADSci nodes: podium's per-step time over
    the node's own floor (measured between the workflow runs, so both see the same machine load), and the
    requests the node answered per action; MADSci's manager on the same nodes (``madsci``), no-op only."""
    names = ("robotarm_1", "liquidhandler_1", "platereader_1")
    with madsci_nodes(tmp / "nodes", names) as nodes:
        urls = {n: u for n, (u, _) in nodes.items()}
        arm_log = nodes["robotarm_1"][1]
        workcell = tmp / "workcell.yaml"
        workcell.write_text(yaml.safe_dump({"name": "bench", "nodes": urls}))
        out: dict[str, Any] = {"hold_s": hold_s}
        for store, workloads in (
            (
                None,
                (
                    ("noop", {"action": "home"}, 10),
                    ("hold", {"action": "hold", "args": {"seconds": hold_s}}, 5),
                ),
            ),
            ("memory://", (("noop_memory_store", {"action": "home"}, 10),)),
        ):
            port = free_port()
            argv = [sys.executable, "-m", "podium", "workcell", "serve", "--port", str(port)]
            argv += ["--workcell", str(workcell), "--data-dir", str(tmp / f"data-{port}")]
            argv += ["--store-url", store] if store else []
            with (
                server_process(argv, f"http://127.0.0.1:{port}", tmp / f"podium-{port}.log", cwd=tmp) as url,
                WorkcellClient(url, working_directory=tmp) as client,
            ):
                out |= podium_workloads(client, urls, arm_log, workloads, reps)
        if madsci:
            config = {
                "label": "madsci_nodes",
                "settings": {"scheduler_update_interval": 0.2, "node_update_interval": 0.2},
                "ten_reps": 2,
                "queued": 0,
                "round_trip": False,
            }
            before = node_requests(arm_log)
            fig = run_madsci(tmp / "madsci", urls, [config], [])["madsci_nodes"]
            counts = diff_counts(node_requests(arm_log), before)
            out["madsci"] = {
                "per_step_ms": fig["per_step_ms"],
                "overhead_ms": fig["per_step_ms"] - out["noop"]["floor_ms"],
                "requests_per_action": sum(counts.values()) / 20,
                "requests_by_kind_per_action": {k: v / 20 for k, v in counts.items()},
            }
    return out


# --- report ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--podium-only", action="store_true", help="skip MADSci (no peer venv, no Redis)")
    parser.add_argument(
        "--madsci-interval", type=float, default=0.2, help="MADSci's short scheduler interval"
    )
    parser.add_argument(
        "--madsci-nodes-only",
        action="store_true",
        help="only the workloads on unmodified MADSci nodes (podium and MADSci's manager)",
    )
    args = parser.parse_args(argv)
    if args.madsci_nodes_only:
        report_madsci_nodes(quick=args.quick, madsci=not args.podium_only)
        return
    quick = args.quick
    podium_queued = 20 if quick else 100
    configs = [
        {
            "label": "defaults",
            "settings": {"scheduler_update_interval": 5.0, "node_update_interval": 2.0},
            "ten_reps": 1,
            "queued": 3,
        },
        {
            "label": f"interval_{args.madsci_interval:g}s",
            "settings": {
                "scheduler_update_interval": args.madsci_interval,
                "node_update_interval": args.madsci_interval,
            },
            "ten_reps": 1 if quick else 2,
            "queued": 6 if quick else 20,
        },
    ]
    if quick:
        configs = configs[1:]
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "inprocess").mkdir()
        inprocess = asyncio.run(
            run_podium_inprocess(tmp / "inprocess", ten_reps=3 if quick else 10, queued=podium_queued)
        )
        nodes = {
            k: v
            for k, v in make_sim_nodes(default_duration_s=0.0, work_dir=tmp / "nodes").items()
            if k in NODES
        }
        with run_sim_nodes(nodes) as cluster:
            urls = dict(cluster.urls)
            podium = run_podium(tmp / "podium", urls, ten_reps=3 if quick else 10, queued=podium_queued)
            madsci: dict[str, dict[str, Any]] = {}
            madsci_error = None
            if args.podium_only:
                madsci_error = "skipped (--podium-only)"
            else:
                try:
                    madsci = run_madsci(tmp / "madsci", urls, configs, notes)
                except Exception as exc:  # report what failed instead of a figure
                    madsci_error = f"{type(exc).__name__}: {exc}"
                    notes.append(
                        "MADSci not run: tried its WorkcellManager + DataManager + LocationManager 0.8.1 "
                        f"(peer venv, Redis {REDIS_HOST}:{REDIS_PORT}, in-memory document store): {madsci_error}"
                    )

    systems = [("podium", podium), ("podium in-process", inprocess)] + [
        (f"MADSci {k}", v) for k, v in madsci.items()
    ]
    headers = ["metric", *[name for name, _ in systems]]
    metric_rows = [
        ("node round trip, own client (ms)", "node_round_trip_ms"),
        ("10-step submit-to-completed (ms)", "ten_step_submit_to_completed_ms"),
        ("per step (ms)", "per_step_ms"),
        ("per-step overhead (ms)", "per_step_overhead_ms"),
        ("per step p50 (ms, manager's timestamps)", "per_step_p50_ms"),
        ("  p99", "per_step_p99_ms"),
        ("per-step overhead p50 (ms)", "per_step_overhead_p50_ms"),
        ("  p99", "per_step_overhead_p99_ms"),
        ("queued 3-step workflows (N)", "queued_workflows"),
        ("  completed", "queued_completed"),
        ("makespan (s)", "makespan_s"),
        ("makespan per workflow (ms)", "makespan_per_workflow_ms"),
    ]
    rows: list[list[Any]] = [[label, *[fig.get(key, "") for _, fig in systems]] for label, key in metric_rows]
    ratios: dict[str, dict[str, float]] = {}
    for label, fig in madsci.items():
        ratios[label] = {
            "per_step_overhead": fig["per_step_overhead_ms"] / podium["per_step_overhead_ms"],
            "ten_step_submit_to_completed": fig["ten_step_submit_to_completed_ms"]
            / podium["ten_step_submit_to_completed_ms"],
            "makespan_per_workflow": fig["makespan_per_workflow_ms"] / podium["makespan_per_workflow_ms"],
        }
    for key, title in (
        ("per_step_overhead", "ratio MADSci/podium: per-step overhead"),
        ("ten_step_submit_to_completed", "ratio MADSci/podium: 10-step submit-to-completed"),
        ("makespan_per_workflow", "ratio MADSci/podium: makespan per workflow"),
    ):
        if ratios:
            rows.append([title, "1", "", *[f"{r[key]:.0f}x" for r in ratios.values()]])
    targets = {
        "per_step_overhead_under_10ms": podium["per_step_overhead_ms"] < 10,
        "per_step_overhead_under_10ms_inprocess": inprocess["per_step_overhead_ms"] < 10,
        "design_per_step_p50_under_5ms": podium.get("per_step_overhead_p50_ms", 1e9) < 5,
        "design_per_step_p99_under_10ms": podium.get("per_step_overhead_p99_ms", 1e9) < 10,
        "at_least_50x_faster_per_step": bool(ratios)
        and all(r["per_step_overhead"] >= 50 for r in ratios.values()),
    }
    notes.insert(
        0,
        "same podium sim nodes (instant no-op actions, loopback HTTP) for both managers; podium: "
        "`podium workcell serve` on SQLite + podium.client.WorkcellClient; MADSci: WorkcellManager + "
        "DataManager + LocationManager 0.8.1 + MADSci's WorkcellClient (reads the workflow every 50 ms); "
        "'podium in-process': WorkcellEngine's Python API, nodes on the same event loop, no server or client; "
        "ratios are MADSci over podium (both over HTTP with their own clients)",
    )
    for label, fig in madsci.items():
        notes.append(
            f"MADSci {label}: scheduler_update_interval={fig['settings']['scheduler_update_interval']} s, "
            f"node_update_interval={fig['settings']['node_update_interval']} s; "
            f"{fig['queued_workflows']} queued workflows (podium: {podium['queued_workflows']}), "
            f"{fig['ten_step_runs']} run(s) of the 10-step workflow (podium: {podium['ten_step_runs']}, median); "
            f"100 workflows at this rate would take ~{fig['makespan_per_workflow_ms'] * 100 / 1000:.0f} s (not run)"
        )

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    notes.append(
        f"targets: podium per-step overhead < 10 ms: over HTTP {verdict(targets['per_step_overhead_under_10ms'])}, "
        f"in-process {verdict(targets['per_step_overhead_under_10ms_inprocess'])}; DESIGN per-step overhead over HTTP "
        f"p50 < 5 ms {verdict(targets['design_per_step_p50_under_5ms'])}, "
        f"p99 < 10 ms {verdict(targets['design_per_step_p99_under_10ms'])}; >= 50x MADSci per step: "
        + (verdict(targets["at_least_50x_faster_per_step"]) if ratios else "not measured")
    )
    for note in notes:
        print(f"# {note}")
    report(
        "workcell",
        headers,
        rows,
        {
            "podium": podium,
            "podium_inprocess": inprocess,
            "madsci": madsci or None,
            "madsci_note": madsci_error,
            "ratios_madsci_over_podium": ratios,
            "targets": targets,
            "quick": quick,
        },
    )
    if not args.podium_only:
        # The same comparison on unmodified MADSci nodes (their SDK, its 0.5 s start), a second report.
        try:
            report_madsci_nodes(quick=quick, madsci=True)
        except Exception as exc:  # report what failed instead of a figure
            print(f"# workloads on unmodified MADSci nodes not run: {type(exc).__name__}: {exc}")


def report_madsci_nodes(*, quick: bool, madsci: bool) -> dict[str, Any]:
    """Run and print the workloads on unmodified MADSci nodes; return their figures."""
    with tempfile.TemporaryDirectory() as tmp_name:
        fig = run_podium_on_madsci_nodes(Path(tmp_name), reps=2 if quick else 5, hold_s=1.0, madsci=madsci)
    noop, hold = fig["noop"], fig["hold"]
    rows: list[list[Any]] = [
        ["node floor, no-op action (ms; create + start)", noop["floor_ms"], "", ""],
        ["  requests per action (floor)", noop["floor_requests_per_action"], "", ""],
        ["podium per step p50 / p99 (ms)", noop["per_step_p50_ms"], noop["per_step_p99_ms"], ""],
        ["podium overhead over the floor p50 / p99 / mean (ms)", noop["overhead_p50_ms"], noop["overhead_p99_ms"],
         noop["overhead_mean_ms"]],
        ["  paired: median over runs of (run's median step - floor just before it) (ms)",
         noop["overhead_paired_median_ms"], "", ""],
        ["podium node requests per action (all kinds)", noop["requests_per_action"], "", ""],
        ["  same, memory store: overhead p50 / p99 / mean (ms)", fig["noop_memory_store"]["overhead_p50_ms"],
         fig["noop_memory_store"]["overhead_p99_ms"], fig["noop_memory_store"]["overhead_mean_ms"]],
        ["  same, memory store: paired median (ms)", fig["noop_memory_store"]["overhead_paired_median_ms"], "", ""],
        [f"node floor, hold({fig['hold_s']:g} s) (ms; same polling)", hold["floor_ms"], "", ""],
        ["  requests per action (floor)", hold["floor_requests_per_action"], "", ""],
        ["podium hold per step p50 / p99 (ms)", hold["per_step_p50_ms"], hold["per_step_p99_ms"], ""],
        ["podium hold overhead p50 / p99 / mean (ms)", hold["overhead_p50_ms"], hold["overhead_p99_ms"],
         hold["overhead_mean_ms"]],
        ["podium hold node requests per action", hold["requests_per_action"], "", ""],
    ]  # fmt: skip
    if "madsci" in fig:
        m = fig["madsci"]
        rows += [
            ["MADSci manager per step, no-op (ms; interval 0.2 s)", m["per_step_ms"], "", ""],
            ["MADSci overhead over the floor (ms)", m["overhead_ms"], "", ""],
            ["MADSci node requests per action", m["requests_per_action"], "", ""],
        ]
    print(
        "# unmodified MADSci 0.8.1 nodes (madsci.node_module, default settings; its SDK sleeps 0.5 s in every "
        "start); podium: `podium workcell serve` on SQLite (synchronous=FULL: one fsync per step, the step's "
        "acknowledged before its start, which also brings the previous step's end to disk) and, for comparison, "
        "on the memory store; "
        "per step from the manager's own step end times; floor = podium's NodeClient create + start "
        "(+ result polls for hold), nothing else, same nodes, same run; requests counted from the node's "
        "access log (every kind, status polls included); "
        f"by kind, no-op: {noop['requests_by_kind_per_action']}; hold: {hold['requests_by_kind_per_action']}"
    )
    report("workcell_madsci_nodes", ["metric", "value", "", ""], rows, fig)
    return fig


if __name__ == "__main__":
    main()
