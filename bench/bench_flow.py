"""Benchmark podium.flow against PenguiFlow 2.2.5 on the same workloads, in the same run.

    .venv/bin/python bench/bench_flow.py                 # full run (PenguiFlow venv built on first use)
    .venv/bin/python bench/bench_flow.py --quick         # small sizes, a smoke run
    .venv/bin/python bench/bench_flow.py --quick --podium-only   # no PenguiFlow, no network

Each side runs in its own process with its own interpreter (PenguiFlow in the venv made by
``bench.peervenv``); this file is the worker too (``--worker penguiflow|podium``), importing only the
library under test. Workloads, identical on both sides:

- hop overhead: a chain of no-op nodes (``validate="none"``), messages emitted and fetched concurrently
  (pipelined); overhead per hop = (time(H hops) - time(1 hop)) / (messages x (H - 1)), so emit, fetch
  and message construction cancel out. Also the sequential latency per hop (one message at a time) and,
  for reference, a bare asyncio.Queue chain: the floor;
- throughput: 10,000 messages through a 3-node linear flow, pipelined;
- fan-out to 100 + join_k: one node fans each message to 100 worker nodes, ``join_k(100)`` rejoins them;
- memory: bytes held by 10,000 in-flight messages queued in front of a blocked node (tracemalloc), and
  what the runtime adds on top of the Message objects themselves;
- import time: ``import <package>`` in a fresh interpreter (median of several), plus the time to the first
  usable names and the package's own cost with asyncio and pydantic already imported.

Prints a table, then one JSON line with every figure and the ratios (podium / PenguiFlow).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODULE = {"penguiflow": "penguiflow", "podium": "podium.flow"}


# -- worker side: runs inside the interpreter of the library under test ---------------------------------


async def _identity(message: Any, _ctx: Any) -> Any:
    return message


def _chain(lib: Any, hops: int) -> Any:
    nodes = [lib.Node(_identity, name=f"hop{i}", policy=lib.NodePolicy(validate="none")) for i in range(hops)]
    pairs = [a.to(b) for a, b in itertools.pairwise(nodes)]
    return lib.create(*pairs, nodes[-1].to())


async def _pump(flow: Any, messages: list[Any]) -> float:
    """Emit ``messages`` while fetching them; seconds until the last one is out."""

    async def produce() -> None:
        for message in messages:
            await flow.emit(message)

    start = time.perf_counter()
    producer = asyncio.ensure_future(produce())
    for _ in range(len(messages)):
        await flow.fetch()
    await producer
    return time.perf_counter() - start


async def pipelined_seconds(lib: Any, hops: int, count: int, reps: int) -> float:
    flow = _chain(lib, hops)
    flow.run()
    headers = lib.Headers(tenant="bench")
    best = math.inf
    try:
        for _ in range(reps):
            messages = [lib.Message(payload=i, headers=headers) for i in range(count)]
            gc.collect()
            best = min(best, await _pump(flow, messages))
    finally:
        await flow.stop()
    return best


async def sequential_latency_us(lib: Any, hops: int, count: int) -> float:
    flow = _chain(lib, hops)
    flow.run()
    headers = lib.Headers(tenant="bench")
    samples: list[float] = []
    try:
        for i in range(count):
            message = lib.Message(payload=i, headers=headers)
            start = time.perf_counter()
            await flow.emit(message)
            await flow.fetch()
            samples.append((time.perf_counter() - start) * 1e6)
    finally:
        await flow.stop()
    return statistics.median(samples)


async def bare_queue_seconds(hops: int, count: int, reps: int) -> float:
    """The same pipelined chain with nothing but asyncio.Queue and one task per hop."""
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue(64) for _ in range(hops + 1)]

    async def hop(inbox: asyncio.Queue[Any], outbox: asyncio.Queue[Any]) -> None:
        while True:
            await outbox.put(await inbox.get())

    tasks = [asyncio.ensure_future(hop(queues[i], queues[i + 1])) for i in range(hops)]
    best = math.inf
    try:
        for _ in range(reps):
            items = list(range(count))

            async def produce(batch: list[int] = items) -> None:
                for item in batch:
                    await queues[0].put(item)

            gc.collect()
            start = time.perf_counter()
            producer = asyncio.ensure_future(produce())
            for _ in range(count):
                await queues[-1].get()
            await producer
            best = min(best, time.perf_counter() - start)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return best


async def fanout_join_seconds(lib: Any, width: int, traces: int) -> float:
    async def fan(message: Any, _ctx: Any) -> Any:
        return message

    def worker(index: int) -> Any:
        async def work(message: Any, _ctx: Any) -> Any:
            return message

        return lib.Node(work, name=f"w{index}", policy=lib.NodePolicy(validate="none"))

    fan_node = lib.Node(fan, name="fan", policy=lib.NodePolicy(validate="none"))
    workers = [worker(i) for i in range(width)]
    join = lib.join_k("join", width)
    flow = lib.create(fan_node.to(*workers), *(w.to(join) for w in workers), join.to())
    flow.run()
    headers = lib.Headers(tenant="bench")
    messages = [lib.Message(payload=i, headers=headers) for i in range(traces)]
    try:
        gc.collect()
        start = time.perf_counter()

        async def produce() -> None:
            for message in messages:
                await flow.emit(message)

        producer = asyncio.ensure_future(produce())
        for _ in range(traces):
            aggregate = await flow.fetch()
            assert len(aggregate.payload) == width, "join_k must aggregate every branch"
        await producer
        return time.perf_counter() - start
    finally:
        await flow.stop()


async def inflight_memory(lib: Any, count: int) -> dict[str, float]:
    release = asyncio.Event()

    async def blocked(message: Any, _ctx: Any) -> Any:
        await release.wait()
        return message

    headers = lib.Headers(tenant="bench")
    # the Message objects alone, measured the same way
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    messages = [lib.Message(payload=i, headers=headers) for i in range(count)]
    gc.collect()
    messages_bytes = tracemalloc.get_traced_memory()[0] - base
    del messages
    gc.collect()

    flow = lib.create(
        lib.Node(blocked, name="blocked", policy=lib.NodePolicy(validate="none")).to(), queue_maxsize=0
    )
    flow.run()
    await asyncio.sleep(0)
    gc.collect()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(count):
        await flow.emit(lib.Message(payload=i, headers=headers))
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()
    total = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    release.set()
    await flow.stop()
    return {
        "bytes_per_10k": total * 10_000 / count,
        "runtime_bytes_per_msg": (total - messages_bytes) / count,
        "message_bytes_per_msg": messages_bytes / count,
    }


async def run_worker(lib_name: str, quick: bool) -> dict[str, Any]:
    if lib_name == "penguiflow":
        import penguiflow as lib
    else:
        sys.path.insert(0, str(ROOT / "src"))
        import podium.flow as lib

    hops, count, reps = (6, 300, 2) if quick else (11, 2000, 3)
    throughput_n = 1_000 if quick else 10_000
    width, traces = (100, 5) if quick else (100, 40)
    memory_n = 1_000 if quick else 10_000

    figures: dict[str, Any] = {"library": lib_name, "quick": quick}
    t1 = await pipelined_seconds(lib, 1, count, reps)
    tn = await pipelined_seconds(lib, hops, count, reps)
    figures["hop_overhead_us"] = (tn - t1) / (count * (hops - 1)) * 1e6
    figures["hop_total_us_per_msg"] = tn / count * 1e6
    seq_n = 100 if quick else 300
    l1 = await sequential_latency_us(lib, 1, seq_n)
    ln = await sequential_latency_us(lib, hops, seq_n)
    figures["hop_latency_us"] = (ln - l1) / (hops - 1)
    b1 = await bare_queue_seconds(1, count, reps)
    bn = await bare_queue_seconds(hops, count, reps)
    figures["bare_queue_hop_us"] = (bn - b1) / (count * (hops - 1)) * 1e6
    elapsed = await pipelined_seconds(lib, 3, throughput_n, 1)
    figures["throughput_msgs_per_s"] = throughput_n / elapsed
    elapsed = await fanout_join_seconds(lib, width, traces)
    figures["fanout100_join_ms_per_trace"] = elapsed / traces * 1000
    figures["memory"] = await inflight_memory(lib, memory_n)
    return figures


# -- parent side ------------------------------------------------------------------------------------------


def measure_import(python: str, module: str, runs: int) -> dict[str, float]:
    bare = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    first_use = (
        "import time; t = time.perf_counter(); "
        f"from {module} import Headers, Message, Node, NodePolicy, create; print(time.perf_counter() - t)"
    )
    own = (
        "import asyncio, logging, pydantic, time; from pydantic import BaseModel, TypeAdapter; "
        f"t = time.perf_counter(); import {module} as m; [getattr(m, n) for n in m.__all__]; "
        "print(time.perf_counter() - t)"
    )
    # Same footing for both: bytecode cached (a warm-up run writes it, as pip does at install time).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out: dict[str, float] = {}
    for key, code in (("import_ms", bare), ("import_first_use_ms", first_use), ("import_own_ms", own)):
        samples = []
        for _ in range(runs + 1):
            done = subprocess.run(
                [python, "-c", code], check=True, capture_output=True, text=True, cwd="/", env=env
            )
            samples.append(float(done.stdout.strip()) * 1000)
        out[key] = statistics.median(samples[1:])
    return out


def run_side(side: str, python: str, quick: bool) -> dict[str, Any]:
    env = dict(os.environ)
    if side == "podium":
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    command = [python, str(Path(__file__).resolve()), "--worker", side, *(["--quick"] if quick else [])]
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env, timeout=900)
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    figures.update(measure_import(python, MODULE[side], 3 if quick else 9))
    return figures


ROWS = [
    # key, label, unit, better ("lower"/"higher")
    ("hop_overhead_us", "hop overhead, pipelined", "us/hop", "lower"),
    ("hop_latency_us", "hop latency, one message at a time", "us/hop", "lower"),
    ("bare_queue_hop_us", "bare asyncio.Queue chain (floor)", "us/hop", "lower"),
    ("throughput_msgs_per_s", "3-node linear flow throughput", "msg/s", "higher"),
    ("fanout100_join_ms_per_trace", "fan-out to 100 + join_k", "ms/trace", "lower"),
    ("memory.bytes_per_10k", "memory, 10,000 in-flight messages", "bytes", "lower"),
    ("memory.runtime_bytes_per_msg", "  of which runtime bookkeeping", "B/msg", "lower"),
    ("import_ms", "import <package>", "ms", "lower"),
    ("import_first_use_ms", "import Message, Node, create", "ms", "lower"),
    ("import_own_ms", "package's own import (deps loaded)", "ms", "lower"),
]

TARGETS = {"hop_overhead_us": ("<=", 0.2), "throughput_msgs_per_s": (">=", 5.0), "import_ms": ("<=", 0.5)}


def _get(figures: dict[str, Any], key: str) -> float:
    value: Any = figures
    for part in key.split("."):
        value = value[part]
    return float(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--podium-only", action="store_true", help="skip PenguiFlow (no venv, no network)")
    parser.add_argument("--worker", choices=sorted(MODULE), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(asyncio.run(run_worker(args.worker, args.quick))))
        return 0

    results: dict[str, dict[str, Any]] = {}
    if not args.podium_only:
        sys.path.insert(0, str(ROOT))
        from bench.peervenv import PENGUIFLOW, peer_python

        results["penguiflow"] = run_side("penguiflow", str(peer_python("penguiflow", PENGUIFLOW)), args.quick)
    results["podium"] = run_side("podium", sys.executable, args.quick)

    ratios: dict[str, float] = {}
    header = f"{'workload':<38} {'unit':>8} {'penguiflow':>12} {'podium':>12} {'podium/pf':>10}  target"
    print(header)
    print("-" * len(header))
    for key, label, unit, _better in ROWS:
        ours = _get(results["podium"], key)
        theirs = _get(results["penguiflow"], key) if "penguiflow" in results else math.nan
        ratio = ours / theirs if theirs == theirs and theirs else math.nan
        ratios[key] = ratio
        target = ""
        if key in TARGETS:
            op, bound = TARGETS[key]
            met = ratio <= bound if op == "<=" else ratio >= bound
            target = f"{op} {bound:g} {'met' if met else 'MISSED'}" if ratio == ratio else f"{op} {bound:g}"
        print(f"{label:<38} {unit:>8} {theirs:>12.4g} {ours:>12.4g} {ratio:>10.3g}  {target}")
    print(json.dumps({"results": results, "ratios": ratios}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
