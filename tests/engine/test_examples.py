"""Every example in examples/engine runs and does what it says."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "engine"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_engine_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("conditional_branches", {"db down": "page_oncall", "how to": "faq", "typo": "backlog"}),
        ("fan_out_fan_in", 12),
        ("human_approval", ["deploy", "abandon"]),
        ("child_blueprint", {"state": "store", "checksum": sum(map(ord, "podium")) % 997}),
        (
            "retries_quarantine",
            {"flaky://a": "finished", "down://b": "quarantined", "forbidden://c": "quarantined"},
        ),
    ],
)
def test_example(name: str, expected: Any) -> None:
    assert load(name).main() == expected


def test_quick_start() -> None:
    job = load("quick_start").main()
    assert (job["status"], job["result"]) == ("finished", "hello, podium")


def test_every_example_is_tested() -> None:
    tested = {
        "quick_start",
        "conditional_branches",
        "fan_out_fan_in",
        "human_approval",
        "child_blueprint",
        "retries_quarantine",
    }
    assert {p.stem for p in EXAMPLES.glob("*.py")} == tested
