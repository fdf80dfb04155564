"""Benchmark ReactPlanner's own overhead per step, podium vs PenguiFlow 2.2.5, in the same run.

    .venv/bin/python bench/bench_planner.py                # both (PenguiFlow venv built on first use)
    .venv/bin/python bench/bench_planner.py --podium-only  # no PenguiFlow, no network
    .venv/bin/python bench/bench_planner.py --instructions # instructions per call under valgrind (minutes)

The LLM is scripted and answers at once (a precomputed JSON string) and the tools return at once, so what
is measured is the planner: prompt and history building, reading the action, validating arguments and
outputs, bookkeeping. Workloads, identical on both sides (each side in its own interpreter; this file is
the worker too, ``--worker penguiflow|podium``):

- sequential: runs of STEPS tool calls then a final answer (``max_iters`` STEPS + 1); time per step;
- parallel: runs of STEPS/4 parallel plans of 4 branches each plus a join, then a final answer; time per
  branch call.

The machine is shared, so the two sides alternate for ``--rounds`` rounds and each figure is the best
round's median. Prints a table, then one JSON line with every figure and the ratios (podium / PenguiFlow;
goal <= 0.2).

The ``floor`` column is the same work without a planner, measured on the podium side: each reply read into a
``PlannerAction``, the arguments validated, the tools called, their outputs validated and dumped, the join's
arguments filled and validated, and each step's action and observation rendered as the JSON text the LLM reads
next (``json.dumps``' text, written as podium writes it), all inline. Any planner that keeps PenguiFlow's
contract does at least this, so ``floor/pf`` bounds the ratio a planner can reach on that workload. It is a
subset of what PenguiFlow 2.2.5 itself does (``penguiflow/planner/react.py``): ``step`` reads every reply with
``PlannerAction.model_validate_json``; ``_execute_parallel_plan`` validates each branch's arguments with
``spec.args_model.model_validate``, runs the branches under ``asyncio.gather`` (one task each), where
``_run_parallel_branch`` awaits the tool and validates its output with ``spec.out_model.model_validate``; then
per branch it dumps the arguments and the output (``model_dump(mode="json")``) into the branch's payload,
fills the join's ``results`` with those dumps and validates them with the join's model, calls the join,
validates and dumps its output; and ``_build_messages`` renders every step's action and observation with
``json.dumps(..., sort_keys=True)`` on every prompt (so each step is rendered once per later step; the floor
renders it once). None of that is done once per plan where PenguiFlow does it per branch, and doing it batched
does not help: pydantic-core validates a list of 4 argument dicts through a ``TypeAdapter`` in the time of 4
separate calls (2.2 us either way), and dumps 4 outputs likewise (1.6 us).

The ``tools`` column is the tools' own time per call on each side (each call of a run awaited in turn, its
arguments already validated); both ratios include it, and ``net`` is the ratio without it on either side
((podium - tools) / (penguiflow - tools)), the planners' own overhead.

``--instructions`` counts instead of timing (valgrind's callgrind, no output file): per tool call, a worker
doing 60 planner runs minus one doing 10, so start-up and warm-up cancel out. Counts do not depend on the
machine's load, which the timings on a shared machine do; both workers run with ``PYTHONHASHSEED=0``, since
start-up's count moves with the hash seed by a few million instructions, a few thousand per call here.

What bounds the parallel ratio, in instructions per plan (4 branches + join; each operation counted alone,
CPython 3.11, pydantic 2.14 / pydantic-core 2.50; PenguiFlow 2.2.5 spends 1.60M per plan, 320k per call):

    read the reply (PlannerAction, validate_json)                       41.7k
    validate the 4 branches' arguments                                   20.9k
    validate the 4 outputs (instances)                                    5.7k
    dump the 4 arguments and the 4 outputs (json mode)                   39.0k
    validate the join's arguments from those dumps                       30.6k
    dump the action                                                      27.9k
    render the action and the observation (prompts.encode_json_data)    102.0k
    the tools themselves (4 x search, merge; counted on both sides)    118.5k
    total                                                               386.3k  = 77.3k per call: 0.24

That is the ratio of a planner with no loop, no tasks, no message lists and no bookkeeping at all, writing
the same prompt text as PenguiFlow. The render is ujson with json's separators (``json.dumps(data,
ensure_ascii=False, sort_keys=True)``'s text for JSON-mode dumps, byte for byte; json's C encoder takes
163.2k for it, and 28k of ujson's 102k is sorting keys). orjson takes 26.8k, which would bring the total to
311k (0.194), but its text differs (no spaces after ``,`` and ``:``; floats: ``1e-5``/``0.00001`` vs
``1e-05``; ``null`` for ``NaN``), and no exact post-pass was found that is cheaper than ujson: ``bytes.replace``
of ``,`` and ``:`` (orjson + 2 replaces: 60.5k) is exact only when no string holds a ``,`` or a ``:``, which an
LLM's thoughts and tools' texts usually do; orjson's indented form with its newlines dropped (split, lstrip,
join) 186k; a regex over it 133k for the observation alone; splitting on quotes 113k for the observation.
Python's string operations cost 7 to 14 instructions per character and a few hundred per piece, as much as
an encoder. So 1/5 on this workload is out of reach in CPython 3.11 for any planner that shows the LLM
PenguiFlow's text. What podium's planner spends above that floor (101.9k per call measured on 2026-12-07,
509k per plan: 123k more) is the branches' tasks (7.7k each, 95.7k per call with the branches awaited in
turn: PenguiFlow's contract runs each branch as a task of its own, see planner/eager.py; allocating the Task
object ~2.3k, the ``StopIteration`` of a first step that returns ~2.1k, its context copy and run ~1k) and the loop's
Python, spread thin (run_tool ~2k a call, a tool context ~2.6k, the join's template ~5k, the branches'
bookkeeping ~2.5k each). The floor as a run (``_floor_run`` under callgrind, its own loop and calls
included) is 99.4k per call, with the tools at 19.7k on either side: net 0.27 for it as well.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODULE = {"penguiflow": "penguiflow", "podium": "podium.flow"}
STEPS = 24


# -- worker side ------------------------------------------------------------------------------------------


class _InstantLLM:
    """Replays precomputed replies, cycling, without awaiting anything."""

    def __init__(self, replies: list[str]) -> None:
        self._replies = replies
        self._next = 0

    async def complete(self, *, messages: Any, response_format: Any = None) -> str:
        reply = self._replies[self._next % len(self._replies)]
        self._next += 1
        return reply


def _catalog(lib: str) -> Any:
    from pydantic import BaseModel

    catalog = importlib.import_module(f"{MODULE[lib]}.catalog")
    node_mod = importlib.import_module(f"{MODULE[lib]}.node")
    registry_mod = importlib.import_module(f"{MODULE[lib]}.registry")

    class Query(BaseModel):
        topic: str
        limit: int = 3

    class Hits(BaseModel):
        topic: str
        hits: list[str]

    class Merge(BaseModel):
        expect: int
        results: list[Hits]

    @catalog.tool(desc="search an index", side_effects="read")
    async def search(args: Query, ctx: Any) -> Hits:
        return Hits(topic=args.topic, hits=[f"{args.topic}-{i}" for i in range(args.limit)])

    @catalog.tool(desc="merge results")
    async def merge(args: Merge, ctx: Any) -> Hits:
        return Hits(topic="merged", hits=[hit for result in args.results for hit in result.hits])

    registry = registry_mod.ModelRegistry()
    registry.register("search", Query, Hits)
    registry.register("merge", Merge, Hits)
    nodes = [node_mod.Node(search, name="search"), node_mod.Node(merge, name="merge")]
    return catalog.build_catalog(nodes, registry)


def _sequential_replies() -> list[str]:
    calls = [
        {"thought": f"step {i}", "next_node": "search", "args": {"topic": f"t{i}"}} for i in range(STEPS)
    ]
    return [
        json.dumps(item) for item in [*calls, {"thought": "done", "next_node": None, "args": {"ok": True}}]
    ]


def _parallel_replies() -> list[str]:
    plans = [
        {
            "thought": f"fan out {i}",
            "plan": [{"node": "search", "args": {"topic": f"t{i}-{b}"}} for b in range(4)],
            "join": {"node": "merge"},
        }
        for i in range(STEPS // 4)
    ]
    return [
        json.dumps(item) for item in [*plans, {"thought": "done", "next_node": None, "args": {"ok": True}}]
    ]


async def _per_call_us(lib: str, replies: list[str], calls_per_run: int, runs: int) -> float:
    planner_mod = importlib.import_module(f"{MODULE[lib]}.planner")
    catalog = _catalog(lib)
    # one planner for every run, as an application keeps one (each run reads the replies from the first)
    planner = planner_mod.ReactPlanner(
        llm_client=_InstantLLM(replies), catalog=catalog, max_iters=len(replies) + 1
    )
    samples: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        result = await planner.run("benchmark query")
        samples.append((time.perf_counter() - start) / calls_per_run * 1e6)
        assert result.reason == "answer_complete", result
    return statistics.median(samples)


async def _call(spec: Any, args: Any) -> Any:
    return spec.out_model.model_validate(await spec.node.func(args, None)).model_dump(mode="json")


async def _floor_run(
    action_model: Any, specs: dict[str, Any], replies: list[str], render: Callable[[Any], str]
) -> None:
    """One run's essential work, inline: read, validate, call, dump, render (see the module's docstring)."""
    history: list[str] = []
    for raw in replies:
        action = action_model.model_validate_json(raw)
        if action.plan:
            branches, results = [], []
            for item in action.plan:
                spec = specs[item.node]
                args = spec.args_model.model_validate(item.args)
                out = await _call(spec, args)
                branches.append({"node": spec.name, "args": args.model_dump(mode="json"), "observation": out})
                results.append(out)
            join = specs[action.join.node]
            joined = await _call(
                join, join.args_model.model_validate({"expect": len(results), "results": results})
            )
            observation: Any = {
                "branches": branches,
                "stats": {"success": len(results), "failed": 0},
                "join": {"node": join.name, "observation": joined},
            }
        elif action.next_node is None:
            break
        else:
            spec = specs[action.next_node]
            observation = await _call(spec, spec.args_model.model_validate(action.args))
        history.append(render(action.model_dump(mode="json")))
        history.append(render({"observation": observation}))


async def _floor_us_per_call(lib: str, replies: list[str], calls_per_run: int, runs: int) -> float:
    action_model = importlib.import_module(f"{MODULE[lib]}.planner").PlannerAction
    specs = {spec.name: spec for spec in _catalog(lib)}
    # json.dumps(data, ensure_ascii=False, sort_keys=True)'s text, as podium writes it for JSON-mode dumps
    render = importlib.import_module(f"{MODULE[lib]}.planner.prompts").encode_json_data
    samples: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        await _floor_run(action_model, specs, replies, render)
        samples.append((time.perf_counter() - start) / calls_per_run * 1e6)
    return statistics.median(samples)


def _tool_calls(lib: str, specs: dict[str, Any], replies: list[str]) -> list[tuple[Any, Any]]:
    """Every tool call a run of ``replies`` makes, as (function, validated arguments), join included."""
    action_model = importlib.import_module(f"{MODULE[lib]}.planner").PlannerAction
    calls: list[tuple[Any, Any]] = []
    for raw in replies:
        action = action_model.model_validate_json(raw)
        if action.plan:
            results = []
            for item in action.plan:
                spec = specs[item.node]
                args = spec.args_model.model_validate(item.args)
                calls.append((spec.node.func, args))
                results.append(asyncio.run(spec.node.func(args, None)).model_dump(mode="json"))
            join = specs[action.join.node]
            calls.append(
                (join.node.func, join.args_model.model_validate({"expect": len(results), "results": results}))
            )
        elif action.next_node is not None:
            spec = specs[action.next_node]
            calls.append((spec.node.func, spec.args_model.model_validate(action.args)))
    return calls


async def _tools_us_per_call(lib: str, replies: list[str], calls_per_run: int, runs: int) -> float:
    """The tools' own time: each call of a run awaited in turn with its arguments already validated."""
    specs = {spec.name: spec for spec in _catalog(lib)}
    calls = await asyncio.to_thread(_tool_calls, lib, specs, replies)
    samples: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        for func, args in calls:
            await func(args, None)
        samples.append((time.perf_counter() - start) / calls_per_run * 1e6)
    return statistics.median(samples)


async def run_worker(lib: str, runs: int) -> dict[str, float]:
    sequential, parallel = _sequential_replies(), _parallel_replies()
    await _per_call_us(lib, sequential, STEPS, 3)  # warm-up (imports, schema caches)
    figures = {
        "sequential_us_per_step": await _per_call_us(lib, sequential, STEPS, runs),
        "parallel_us_per_call": await _per_call_us(lib, parallel, STEPS + STEPS // 4, runs),
    }
    figures["tools_sequential_us_per_step"] = await _tools_us_per_call(lib, sequential, STEPS, runs)
    figures["tools_parallel_us_per_call"] = await _tools_us_per_call(lib, parallel, STEPS + STEPS // 4, runs)
    if lib == "podium":
        await _floor_us_per_call(lib, sequential, STEPS, 3)
        figures["floor_sequential_us_per_step"] = await _floor_us_per_call(lib, sequential, STEPS, runs)
        figures["floor_parallel_us_per_call"] = await _floor_us_per_call(
            lib, parallel, STEPS + STEPS // 4, runs
        )
    return figures


WORKLOADS = {"sequential": (_sequential_replies, STEPS), "parallel": (_parallel_replies, STEPS + STEPS // 4)}


async def run_count_worker(lib: str, workload: str, runs: int) -> None:
    """``runs`` planner runs of ``workload`` and nothing else timed: what ``--instructions`` counts.

    ``tools-WORKLOAD`` runs only that workload's tool calls ``runs`` times (the ``tools`` column's work)."""
    if workload.startswith("tools-"):
        replies, calls = WORKLOADS[workload.removeprefix("tools-")]
        await _tools_us_per_call(lib, replies(), calls, runs)
        return
    replies, calls = WORKLOADS[workload]
    await _per_call_us(lib, replies(), calls, runs)


# -- parent side ------------------------------------------------------------------------------------------


def count_instructions(python: str, side: str, workload: str, runs: int) -> int:
    """Instructions of a worker process doing ``runs`` planner runs (valgrind's callgrind, no output file)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same start-up in both workers (see the docstring)
    if side == "podium":
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        python, str(Path(__file__).resolve()), "--count", side, workload, str(runs),
    ]  # fmt: skip
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env, timeout=1800)
    (line,) = [line for line in done.stderr.splitlines() if "Collected :" in line]
    return int(line.split(":")[-1].strip().replace(",", ""))


def instructions_per_call(python: str, side: str, workload: str) -> float:
    """Instructions per tool call: 60 runs minus 10 runs (start-up, imports and warm-up cancel out)."""
    calls = WORKLOADS[workload.removeprefix("tools-")][1]
    low, high = count_instructions(python, side, workload, 10), count_instructions(python, side, workload, 60)
    return (high - low) / 50 / calls


def print_instructions(sides: dict[str, str]) -> None:
    counts = {
        workload: {side: instructions_per_call(python, side, workload) for side, python in sides.items()}
        for workload in [*WORKLOADS, *(f"tools-{workload}" for workload in WORKLOADS)]
    }
    print(
        f"{'workload':<12} {'penguiflow':>12} {'podium':>10} {'podium/pf':>10}"
        f" {'pf tools':>9} {'our tools':>10} {'net':>7}   (instructions per call)"
    )
    for workload in WORKLOADS:
        theirs, ours = counts[workload].get("penguiflow", math.nan), counts[workload]["podium"]
        tools = counts[f"tools-{workload}"]
        their_tools, our_tools = tools.get("penguiflow", math.nan), tools["podium"]
        net = counts[workload]["net"] = (ours - our_tools) / (theirs - their_tools)
        print(
            f"{workload:<12} {theirs:>12,.0f} {ours:>10,.0f} {ours / theirs:>10.3f}"
            f" {their_tools:>9,.0f} {our_tools:>10,.0f} {net:>7.3f}"
        )
    print(json.dumps(counts, sort_keys=True))


def run_side(side: str, python: str, runs: int) -> dict[str, float]:
    env = dict(os.environ)
    if side == "podium":
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    command = [python, str(Path(__file__).resolve()), "--worker", side, "--runs", str(runs)]
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env, timeout=900)
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


ROWS = [
    (
        "sequential_us_per_step",
        f"sequential, {STEPS} tool steps per run",
        "us/step",
        "floor_sequential_us_per_step",
        "tools_sequential_us_per_step",
    ),
    (
        "parallel_us_per_call",
        f"parallel, {STEPS // 4} plans x 4 branches + join",
        "us/call",
        "floor_parallel_us_per_call",
        "tools_parallel_us_per_call",
    ),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--podium-only", action="store_true", help="skip PenguiFlow (no venv, no network)")
    parser.add_argument("--runs", type=int, default=21, help="planner runs per workload (median taken)")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (best round taken)")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions per call under valgrind instead"
    )
    parser.add_argument("--worker", choices=sorted(MODULE), help=argparse.SUPPRESS)
    parser.add_argument("--count", nargs=3, metavar=("SIDE", "WORKLOAD", "RUNS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(asyncio.run(run_worker(args.worker, args.runs))))
        return 0
    if args.count:
        side, workload, runs = args.count
        asyncio.run(run_count_worker(side, workload, int(runs)))
        return 0

    sides = {"podium": sys.executable}
    if not args.podium_only:
        sys.path.insert(0, str(ROOT))
        from bench.peervenv import PENGUIFLOW, peer_python

        sides = {"penguiflow": str(peer_python("penguiflow", PENGUIFLOW)), **sides}
    if args.instructions:
        print_instructions(sides)
        return 0
    results: dict[str, dict[str, float]] = {}
    for _round in range(args.rounds):
        for side, python in sides.items():
            figures = run_side(side, python, args.runs)
            best = results.setdefault(side, figures)
            for key, value in figures.items():
                best[key] = min(best[key], value)
    ratios: dict[str, float] = {}
    header = (
        f"{'workload':<44} {'unit':>8} {'penguiflow':>11} {'podium':>9} {'podium/pf':>10}  {'target':<13}"
        f" {'floor':>7} {'floor/pf':>9} {'tools':>6} {'net':>6}"
    )
    print(header)
    print("-" * len(header))
    for key, label, unit, floor_key, tools_key in ROWS:
        ours = results["podium"][key]
        floor = results["podium"].get(floor_key, math.nan)
        theirs = results["penguiflow"][key] if "penguiflow" in results else math.nan
        ratio = ratios[key] = ours / theirs if theirs == theirs and theirs else math.nan
        floor_ratio = ratios[floor_key] = floor / theirs if theirs == theirs and theirs else math.nan
        our_tools = results["podium"].get(tools_key, math.nan)
        their_tools = results["penguiflow"][tools_key] if "penguiflow" in results else math.nan
        net = ratios[f"net_{key}"] = (
            (ours - our_tools) / (theirs - their_tools) if theirs == theirs and theirs else math.nan
        )
        target = f"<= 0.2 {'met' if ratio <= 0.2 else 'MISSED'}" if ratio == ratio else "<= 0.2"
        print(
            f"{label:<44} {unit:>8} {theirs:>11.4g} {ours:>9.4g} {ratio:>10.3g}  {target:<13}"
            f" {floor:>7.4g} {floor_ratio:>9.3g} {our_tools:>6.3g} {net:>6.3g}"
        )
    print(json.dumps({"results": results, "ratios": ratios}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
