"""Every example in examples/flow runs and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flow"

EXPECTED = {
    "quickstart.py": ["[metrics] summarize 2 docs"],
    "routing.py": [
        "metrics <- metric usage",
        "general <- ad spend",
        "web <- kind='web' query='penguins'",
        "sql <- kind='sql' table='colonies'",
        "premium <- ticket from vip",
        "standard <- ticket from acme",
    ],
    "fanout_join.py": [
        "papers:krill | web:krill | wiki:krill",
        "papers:penguins | web:penguins | wiki:penguins",
        "A,B,C",
    ],
    "controller_loop.py": [
        "penguins: penguins: fact 1 about penguins; fact 2 about penguins; fact 3 about penguins",
        "krill: Hop budget exhausted",
        "orcas: Token budget exhausted",
        "seals: Deadline exceeded",
    ],
    "playbook.py": ["antarctic krill-doc-2 :: compressed", "trace kept: meta={'req': 'r1'}"],
    "cancellation.py": [
        "subflow: cancelled for slow question",
        "cancelled: True; tasks 3 -> 2",
        "other trace: answer to quick question",
    ],
}


def run_example(name: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], check=True, capture_output=True, text=True, timeout=60
    )
    return done.stdout


def test_every_example_is_covered() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == {*EXPECTED, "streaming_sse.py", "visualizer.py"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_output(name: str) -> None:
    assert run_example(name).splitlines() == EXPECTED[name]


def test_streaming_sse_example_emits_well_formed_frames_in_order() -> None:
    frames = run_example("streaming_sse.py").split("\n\n")
    assert frames[-1] == ""
    frames = frames[:-1]
    assert [f.splitlines()[1] for f in frames] == [f"id: {i}" for i in range(len(frames))]
    assert all(f.startswith("event: chunk\n") for f in frames[:-1]) and frames[-1].startswith("event: done\n")
    assert frames[0].splitlines()[2] == "data: Penguins"


def test_visualizer_example_prints_mermaid_and_dot() -> None:
    out = run_example("visualizer.py")
    mermaid, dot = out.split("\n\n", 1)
    assert mermaid.startswith("graph LR") and "controller -->|loop| controller" in mermaid
    assert "OpenSea -->|ingress| triage" in mermaid and "answer -->|egress| Rookery" in mermaid
    assert dot.startswith("digraph PenguiFlow {") and 'controller -> controller [label="loop"]' in dot
