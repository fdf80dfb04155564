"""Every example in examples/agents runs offline (scripted LLMs) and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "agents"

EXPECTED = {
    "a2a_remote.py": [
        "partial #0: reading sea ice at Cape Crozier",
        "partial #1: model run complete",
        "answer: {'site': 'Cape Crozier', 'ice_cover': 0.82}",
    ],
    "minimal_planner.py": [
        "triage: {'intent': 'colony-size'}",
        "field_notes: {'documents': ['colony-size: 1,200 breeding pairs counted in 2024']}",
        "answer_complete: About 1,200 breeding pairs.",
        "the LLM was asked 3 times; it saw 6 messages last",
    ],
    "parallel_planner.py": [
        "branches: ['drone_survey', 'ground_survey'] stats={'success': 2, 'failed': 0}",
        "join: {'pairs': 1200, 'sources': ['drone', 'ground']}",
        "answer_complete: about 1,200 pairs",
    ],
    "pause_resume.py": [
        "paused: approval_required {'title': 'weekly census', 'requested_by': 'ada'}; sent so far: []",
        "resumed: ['approval', 'send'] -> {'status': 'sent'}; sent: ['weekly census']",
    ],
    "replan_after_error.py": [
        "the LLM read: SatelliteTimeout: uplink timed out after 30s (suggestion: use the cached_counts tool)",
        "answer_complete: 342 emperors (cached); hops used 2 of 3",
    ],
}


def test_every_example_is_covered() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_output(name: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], check=True, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.splitlines() == EXPECTED[name]
