"""Every example in examples/ops runs and does what it says."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ops"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_ops_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scheduled_job() -> None:
    out = load("scheduled_job").main()
    # 73 hourly runs (hours 0 to 72), the nightly one at wall time (03:00 on the night without 02:30), Monday's
    assert out["kinds"] == {"hourly": 73, "nightly": 3, "weekly": 1}
    assert out["nightly"] == ["Sat 02:30", "Sun 03:00", "Mon 02:30"]
    assert out["finished"] == 77


def test_metrics_scrape() -> None:
    assert load("metrics_scrape").main() == {
        "orchestrator_jobs_total": 4.0,
        "orchestrator_jobs_failed_total": 1.0,
        "podium_jobs_ended_total": 3.0,
        "podium_task_run_seconds_count": 3.0,
        "orchestrator_task_queue_length": 0.0,
    }


def test_traced_job() -> None:
    pytest.importorskip("opentelemetry.sdk")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "traced_job.py")], capture_output=True, text=True, timeout=50
    )
    assert result.returncode == 0, result.stderr[-2000:]
    first, *tree = result.stdout.splitlines()
    assert first.split()[2] == "finished;" and "5 spans" in first
    # one trace: the job at the root, its states and its task (the retry an event on the task) under it
    assert tree[0].startswith("job convert")
    children = sorted(line.strip().split(" (")[0] for line in tree[1:])
    assert children == ["state done", "state start", "state work", "task convert"]
    assert "[taken, attempt failed, retry, taken]" in next(line for line in tree if "task convert" in line)


def test_every_example_is_tested() -> None:
    examples = {"scheduled_job", "metrics_scrape", "s3_round_trip", "traced_job"}
    assert {p.stem for p in EXAMPLES.glob("*.py")} == examples
    # s3_round_trip runs in tests/blobs/test_example.py (it needs the s3 extra and moto)
