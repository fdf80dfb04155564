"""PenguiFlow 2.2.5's 23 examples print the same on podium.flow (import hook) as on PenguiFlow itself.

Both runs happen here, PenguiFlow in its peer venv. Outputs are compared after normalising what differs
from run to run on either library: trace ids (32 hex digits, numbered in order of appearance) and
latencies in milliseconds. Two differences are PenguiFlow's and are listed in KNOWN with the reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from bench.peervenv import PENGUIFLOW, peer_python

from tests.flow.penguiflow.sources import penguiflow_source

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = [
    "controller_multihop", "fanout_join", "map_concurrent", "metadata_propagation", "mlflow_metrics",
    "playbook_retrieval", "quickstart", "react_minimal", "react_parallel", "react_pause_resume", "react_replan",
    "reliability_middleware", "roadmap_status_updates", "roadmap_status_updates_subflows", "routing_policy",
    "routing_predicate", "routing_union", "status_roadmap_flow", "streaming_llm", "testkit_demo", "trace_cancel",
    "traceable_errors", "visualizer",
]  # fmt: skip

_HEX_ID = re.compile(r"\b[0-9a-f]{32}\b")
_LATENCY = re.compile(r"(latency(?:_ms)?'?[:=] ?)[0-9.e+-]+")


def _sorted_join_line(text: str) -> str:
    # PenguiFlow starts node workers in the order of a set of nodes (memory addresses); podium in declaration
    # order, so the two branches of the fan-out reach join_k in either order
    return "\n".join(",".join(sorted(line.split(","))) for line in text.splitlines())


def _one_final_answer_event(text: str) -> str:
    # PenguiFlow 2.2.5 re-enters its retry loop after a node returns a FinalAnswer (a `continue` in
    # _execute_with_reliability): it logs a second node_start and invokes the node again where podium
    # logs node_success once. And stop() cancels its workers in set order, so the node_cancelled lines
    # come in either order
    lines = text.splitlines(keepends=True)
    cancelled = sorted(line for line in lines if line.startswith("node_cancelled"))
    text = "".join(cancelled.pop(0) if line.startswith("node_cancelled") else line for line in lines)
    return re.sub(r"^node_start \| node=respond \| (metrics=\{'queue_depth_in': 0.0, 'queue_depth_out': 1.0)",
                  r"node_success | node=respond | \1", text, flags=re.MULTILINE)  # fmt: skip


KNOWN: dict[str, Callable[[str], str]] = {
    "fanout_join": _sorted_join_line,
    "mlflow_metrics": _one_final_answer_event,
}


def normalise(name: str, text: str) -> str:
    ids: dict[str, str] = {}
    text = _HEX_ID.sub(lambda m: ids.setdefault(m.group(), f"<id{len(ids)}>"), text)
    text = _LATENCY.sub(r"\1<ms>", text)
    return KNOWN.get(name, lambda t: t)(text)


def _script(source: Path, name: str) -> Path:
    folder = source / "examples" / name
    return folder / "main.py" if (folder / "main.py").exists() else folder / "flow.py"


def _run(command: list[str], cwd: Path, pythonpath: str) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": pythonpath, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout


@pytest.fixture(scope="module")
def outputs() -> dict[str, tuple[tuple[int, str], tuple[int, str]]]:
    source = penguiflow_source()
    peer = str(peer_python("penguiflow", PENGUIFLOW))

    def both(name: str) -> tuple[tuple[int, str], tuple[int, str]]:
        script = str(_script(source, name))
        theirs = _run([peer, script], source, "")
        ours = _run([sys.executable, "-m", "tests.flow.penguiflow.alias", script], source, str(ROOT))
        return theirs, ours

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(EXAMPLES, pool.map(both, EXAMPLES), strict=True))


def test_all_23_examples_are_compared(outputs: dict[str, object]) -> None:
    source = penguiflow_source()
    found = [p.name for p in (source / "examples").iterdir() if p.is_dir() and not p.name.startswith("_")]
    assert sorted(found) == sorted(EXAMPLES)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_prints_what_penguiflow_prints(
    name: str, outputs: dict[str, tuple[tuple[int, str], tuple[int, str]]]
) -> None:
    (their_rc, theirs), (our_rc, ours) = outputs[name]
    assert their_rc == 0 and theirs.strip(), f"{name} does not run on PenguiFlow itself"
    assert our_rc == 0
    assert normalise(name, ours) == normalise(name, theirs)
